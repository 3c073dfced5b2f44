"""Feeding the store: every push a logs instance accepted (already durable in its WAL) is queued as it is.

The sink pays one enqueue per push — no per-entry work on the event loop: the push's snappy bytes go to the
writer process, which decodes them.
"""

from __future__ import annotations

from collections.abc import Callable

from service.logs.search.store import LogStore
from service.metrics.proto.push_pb2 import PushRequest


def store_sink(store: LogStore) -> Callable[[str, bytes, int, Callable[[], PushRequest]], None]:
    """A logs-instance sink that queues a push into the store (never blocks the push, never parses it)."""

    def sink(tenant: str, body: bytes, entries: int, request: Callable[[], PushRequest]) -> None:
        store.add_push(tenant, body, entries)

    return sink
