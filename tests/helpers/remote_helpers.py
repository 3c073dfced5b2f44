"""Helpers for the remote_write sender tests: WAL payloads, configs and a scriptable capture peer.

The capture peer is a small aiohttp server that decodes each request and records every sample per series,
and answers from a script (status, delay, headers) so tests can show faults a real receiver cannot.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import snappy
from aiohttp import web

from service.config.schema import loads
from service.metrics.config.remote_write import RemoteWriteConfig
from service.metrics.remote.codec import encode_labels, encode_timeseries
from service.proto.remote_pb2 import WriteRequest
from service.wal import WAL

RECORD = 1


def request_body(series: int, ts_ms: int, *, name: str = "rw_test", value: float = 1.0, first: int = 0) -> bytes:
    """A snappy-compressed WriteRequest: ``series`` series with one sample each at ``ts_ms``."""
    raw = b"".join(
        encode_timeseries(encode_labels([("__name__", name), ("i", str(first + i)), ("job", "rwtest")]),
                          [(ts_ms, value + i)])
        for i in range(series)
    )
    return snappy.compress(raw)


async def fill_wal(wal: WAL, requests: int, series: int, *, start_ms: int | None = None, step_ms: int = 1000,
                   name: str = "rw_test") -> int:
    """Append ``requests`` WriteRequests (timestamps increasing by ``step_ms``); returns the first timestamp."""
    start = start_ms if start_ms is not None else int(time.time() * 1000) - requests * step_ms
    for r in range(requests):
        await wal.append_durable(RECORD, request_body(series, start + r * step_ms, name=name, value=float(r)))
    return start


def rw_config(url: str, extra: str = "", *, name: str = "test") -> RemoteWriteConfig:
    """A remote_write entry from YAML (as users write it), with fast test timings unless ``extra`` overrides."""
    text = f"url: {url}\nname: {name}\n{extra}"
    if "queue_config" not in extra:
        text += "queue_config: {batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 100ms}\n"
    cfg = loads(RemoteWriteConfig, text)
    cfg.check()
    return cfg


@dataclass
class Reply:
    status: int = 204
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class CapturePeer:
    """Records what arrives; ``script(n)`` gives the Reply for the n-th request (0-based), and ``refuse``
    (given the decoded WriteRequest) answers 400 to what it matches, as a receiver refusing a series would."""

    def __init__(self, script: Callable[[int], Reply] | None = None, *, ssl_context: object = None,
                 refuse: Callable[[WriteRequest], bool] | None = None) -> None:
        self.ssl_context = ssl_context
        self.script = script or (lambda n: Reply())
        self.refuse = refuse
        self.requests = 0
        self.times: list[float] = []
        self.headers: list[dict[str, str]] = []
        self.accepted: dict[tuple[tuple[str, str], ...], list[int]] = {}  # series -> timestamps, 2xx only
        self.duplicates = 0
        self.metadata = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def samples(self) -> int:
        return sum(len(v) for v in self.accepted.values())

    async def _handle(self, request: web.Request) -> web.Response:
        n = self.requests
        self.requests += 1
        self.times.append(time.monotonic())
        self.headers.append(dict(request.headers))
        body = await request.read()
        reply = self.script(n)
        if self.refuse is not None and self.refuse(WriteRequest.FromString(snappy.uncompress(body))):
            reply = Reply(400)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if 200 <= reply.status < 300:
            wr = WriteRequest.FromString(snappy.uncompress(body))
            self.metadata += len(wr.metadata)
            for ts in wr.timeseries:
                key = tuple((lb.name, lb.value) for lb in ts.labels)
                seen = self.accepted.setdefault(key, [])
                for s in ts.samples:
                    if seen and s.timestamp <= seen[-1]:
                        self.duplicates += 1  # a resend after a restart; out-of-order would fail the test
                        if s.timestamp < seen[-1]:
                            seen.append(s.timestamp)  # keep it, so the order check sees it
                        continue
                    seen.append(s.timestamp)
        return web.Response(status=reply.status, headers=reply.headers, text="" if reply.status < 300 else "nope")

    async def start(self, port: int = 0, ssl_context: object = None) -> CapturePeer:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v1/write", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ssl_context or self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def in_order(self) -> bool:
        return all(all(a < b for a, b in itertools.pairwise(ts)) for ts in self.accepted.values())


