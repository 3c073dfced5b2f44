"""Loopback scrape targets for tests: an aiohttp server with normal, gzip, OpenMetrics and broken pages."""

from __future__ import annotations

import asyncio
import gzip
import math
import os
import struct
from collections.abc import Callable

import snappy
from aiohttp import web

from service.config import schema
from service.metrics.config.scrape import ScrapeConfig
from service.proto.remote_pb2 import WriteRequest

STALE_BITS = 0x7FF0000000000002
TEXT = (b"# HELP requests_total Requests.\n# TYPE requests_total counter\n"
        b'requests_total{code="200",method="get"} 10\nrequests_total{code="500",method="get"} 1\n'
        b"# TYPE temp gauge\ntemp NaN\ntemp_inf +Inf\n"
        b"# TYPE lat histogram\n"
        b'lat_bucket{le="0.1"} 1\nlat_bucket{le="+Inf"} 2\nlat_sum 0.3\nlat_count 2\n'
        b"# TYPE q summary\n"
        b'q{quantile="0.5"} 0.2\nq_sum 1\nq_count 3\n'
        b'dup 1\ndup 2\n')
OPENMETRICS = (b"# TYPE om_events counter\nom_events_total 5 # {trace_id=\"abc\"} 1.0\nom_events_created 1.7e9\n"
               b"# TYPE om_g gauge\nom_g{x=\"y\"} 2.5 1700000000.123\n# EOF\n")


class TargetServer:
    """Routes: /text /gzip /om /slow /huge /garbage /badutf8 /invalid /many /dyn (mutable `state`)."""

    def __init__(self) -> None:
        self.state: dict[str, object] = {"down": False, "series": [b"dyn_a 1", b"dyn_b 2"]}
        self.requests: list[web.Request] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    def _text(self, body: bytes, ctype: str = "text/plain; version=0.0.4") -> Callable:
        async def handler(request: web.Request) -> web.Response:
            self.requests.append(request)
            return web.Response(body=body, headers={"Content-Type": ctype})
        return handler

    async def _gzip(self, request: web.Request) -> web.Response:
        assert "gzip" in request.headers.get("Accept-Encoding", "")
        return web.Response(body=gzip.compress(TEXT), headers={"Content-Type": "text/plain; version=0.0.4",
                                                                "Content-Encoding": "gzip"})

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(body=TEXT)

    async def _dyn(self, request: web.Request) -> web.Response:
        if self.state["down"]:
            return web.Response(status=503, body=b"down")
        return web.Response(body=b"\n".join(self.state["series"]) + b"\n")  # type: ignore[arg-type]

    async def start(self) -> None:
        app = web.Application()
        many = b"".join(b'many{i="%d"} %d\n' % (i, i) for i in range(50))
        routes = {
            "/text": self._text(TEXT), "/gzip": self._gzip, "/om": self._text(
                OPENMETRICS, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
            "/slow": self._slow, "/huge": self._text(b"h 1\n" * 2_000_000),
            "/garbage": self._text(os.urandom(4096)), "/badutf8": self._text(b'm{a="\xff\xfe"} 1\n'),
            "/invalid": self._text(b"ok 1\nthis is not valid\n"), "/many": self._text(many), "/dyn": self._dyn,
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def scrape_config(text: str) -> ScrapeConfig:
    sc = schema.loads(ScrapeConfig, text)
    sc.check()
    return sc


def decode_bodies(bodies: list[bytes]) -> list[tuple[dict[str, str], float, int]]:
    out = []
    for body in bodies:
        for ts in WriteRequest.FromString(snappy.uncompress(body)).timeseries:
            labels = {label.name: label.value for label in ts.labels}
            for s in ts.samples:
                out.append((labels, s.value, s.timestamp))
    return out


def is_stale(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_BITS


