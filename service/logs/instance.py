"""One logs instance (a ``logs.configs[]`` entry): its WAL, its Loki clients and its push path, nothing else.

Accepted pushes are appended to the instance's WAL (``<wal root>/logs/<safe name>``) and acknowledged
once durable; every ``clients[]`` entry tails that WAL from its own position. What feeds the instance (push
listeners, file tailing) and what else reads its WAL (the search store) are attached by the logs manager:
:meth:`LogsInstance.attach` adds another WAL consumer (retention waits for it, :meth:`LogsInstance.stop` drains it
beside the clients, and its back-pressure check can refuse pushes), ``add_sink`` another receiver of every
accepted push.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import snappy

from service.http.errors import HTTPError
from service.log import get_logger
from service.logs import metrics
from service.logs.client import LokiClient
from service.logs.config import LogsInstanceConfig, ScrapeConfig
from service.logs.push import PushRules
from service.logs.record import RECORD_TYPE, encode_record
from service.proto.push_pb2 import PushRequest
from service.tasks import cancel_and_wait
from service.wal import WAL, wal_dir_for
from service.wal.consumer import WALConsumer

Sink = Callable[[str, bytes, int, Callable[[], PushRequest]], Any]
"""Called with (tenant, body, entries, request) for every accepted push, after it is durable: ``body`` is the
request as the WAL holds it (snappy-compressed protobuf, canonical labels) and ``request()`` parses it only
for a sink that needs the message."""

CapacityCheck = Callable[[], None]
"""Raises :class:`Overloaded` while an attached consumer is too far behind to take more pushes."""

DEFAULT_MAX_PENDING_BYTES = 64 << 20
DEFAULT_MAX_BACKLOG_BYTES = 512 << 20
TRUNCATE_INTERVAL = 30.0


class Overloaded(HTTPError):
    """A push refused for now: 503 or 429 with Retry-After (gRPC answers UNAVAILABLE with that pushback)."""

    def __init__(self, status: int, retry_after: int, message: str) -> None:
        super().__init__(status, message, {"Retry-After": str(retry_after)})


def rules_for(sc: ScrapeConfig | None) -> PushRules:
    """Push rules of a ``loki_push_api`` scrape config; without one, incoming labels and timestamps
    are kept as they are (the main-port endpoints of an instance without a push target)."""
    if sc is None or sc.loki_push_api is None:
        return PushRules(use_incoming_timestamp=True)
    api = sc.loki_push_api
    return PushRules(api.labels, [*api.relabel_configs, *sc.relabel_configs], api.use_incoming_timestamp)


class LogsInstance:
    def __init__(self, cfg: LogsInstanceConfig, wal_root: str, *,
                 max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
                 max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES, wal_sync_interval: float = 0.005) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.wal_dir = wal_dir_for(os.path.join(wal_root, "logs"), cfg.name)
        self.max_pending_bytes = max_pending_bytes
        self.max_backlog_bytes = max_backlog_bytes
        self.wal_sync_interval = wal_sync_interval
        self.wal: WAL | None = None
        self.clients: list[LokiClient] = []
        self.wal_metrics_name = f"logs/{cfg.name}"  # the `instance` label of its WAL's self metrics
        push = cfg.push_configs()
        self.default_rules = rules_for(push[0] if push else None)
        self._sinks: list[Sink] = []
        self._consumers: list[WALConsumer] = []  # attached: besides the clients
        self._checks: list[CapacityCheck] = []
        self._pending = 0
        self._appended = 0
        self._truncator: asyncio.Task[None] | None = None
        self._log = get_logger("logs.instance", instance=cfg.name)

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def attach(self, consumer: WALConsumer, check: CapacityCheck | None = None) -> None:
        """Another reader of this instance's WAL, started by the caller on :attr:`wal`: retention keeps what it
        has not passed, :meth:`stop` drains it beside the clients, and ``check`` may refuse pushes."""
        self._consumers.append(consumer)
        if check is not None:
            self._checks.append(check)

    # --- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the WAL and start the clients."""
        self.wal = await asyncio.to_thread(WAL.open, self.wal_dir, sync_interval=self.wal_sync_interval,
                                           instance=self.wal_metrics_name)
        try:
            seen: set[str] = set()
            for cc in self.cfg.clients:
                if cc.display_name() in seen:
                    raise ValueError(f"logs instance {self.name}: two clients named {cc.display_name()!r}")
                seen.add(cc.display_name())
                client = LokiClient(cc, self.wal, self.name)
                await client.start()
                self.clients.append(client)
        except BaseException:
            await self.stop()
            raise
        self._truncator = asyncio.create_task(self._truncate_loop(), name=f"logs-truncate[{self.name}]")

    async def stop(self) -> None:
        """Stop after what feeds it stopped: the clients and attached consumers drain side by side, each within
        its own deadline (none raises), then the WAL closes."""
        await cancel_and_wait(self._truncator)
        self._truncator = None
        consumers: list[WALConsumer] = [*self.clients, *self._consumers]
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)
        self.clients, self._consumers, self._checks = [], [], []
        if self.wal is not None:
            await self.wal.aclose()
            self.wal = None

    def status(self) -> dict[str, Any]:
        """The instance's consumers of its WAL, for /api/status: unhealthy while a client is failing."""
        clients = [c.status() for c in self.clients]
        return {"healthy": all(c["healthy"] for c in clients), "clients": clients}

    async def _truncate_loop(self) -> None:
        while True:
            await asyncio.sleep(TRUNCATE_INTERVAL)
            await self.truncate()

    async def truncate(self) -> None:
        """Delete WAL segments every client has sent."""
        wal = self.wal
        if wal is None:
            return
        consumers = [c.stored_position for c in [*self.clients, *self._consumers]]
        try:
            await asyncio.to_thread(wal.truncate, 0, 0, consumers)
        except OSError as exc:
            self._log.warning("WAL truncation failed", err=str(exc))

    # --- the data path ---------------------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Raise :class:`Overloaded` instead of queueing without bound (answered 503/429 + Retry-After)."""
        if self.wal is None:
            raise Overloaded(503, 1, f"logs instance {self.name} is not running")
        if self._pending > self.max_pending_bytes:
            raise Overloaded(503, 1, "too many pushes waiting for the WAL; retry later")
        if self.clients:
            backlog = self._appended - min(c.consumed_bytes for c in self.clients)
            if backlog > self.max_backlog_bytes:
                raise Overloaded(429, 5, "forwarding to Loki is behind; retry later")
        for check in self._checks:
            check()

    async def accept(self, rules: PushRules, body: bytes, content_type: str | None, content_encoding: str | None,
                     limit: int, tenant: str) -> list[str]:
        """Apply a push target's rules to a Loki push body and append what they keep durably: the one path of
        HTTP and gRPC pushes. Returns the per-stream errors (streams skipped; the others are stored)."""
        accepted = rules.ingest(body, content_type, content_encoding, limit)
        if accepted.streams:
            await self.push_body(accepted.body, tenant, accepted.entries, accepted.request)
        return accepted.errors

    async def push(self, request: PushRequest, tenant: str, entries: int, body: bytes | None = None) -> None:
        """Append one accepted push durably (``body``: its snappy PushRequest when already at hand)."""
        if body is None:
            body = snappy.compress(request.SerializeToString())
        await self.push_body(body, tenant, entries, lambda: request)

    async def push_body(self, body: bytes, tenant: str, entries: int, request: Callable[[], PushRequest]) -> None:
        """Append a snappy-block PushRequest durably; ``request()`` is asked for the parsed request only
        when sinks are attached."""
        wal = self.wal
        if wal is None:
            raise Overloaded(503, 1, f"logs instance {self.name} is not running")
        payload = encode_record(tenant, entries, body)
        self._pending += len(payload)
        try:
            await wal.append_durable(RECORD_TYPE, payload)
        finally:
            self._pending -= len(payload)
        self._appended += len(payload) + 17
        metrics.ENTRIES_WRITTEN.inc(entries)
        for sink in self._sinks:
            try:
                result = sink(tenant, body, entries, request)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                self._log.exception("a logs sink failed")
