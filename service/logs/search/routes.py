"""Loggator's documented API (docs/http-api.md, Log search API) over the local log store.

Choices where Loggator's docs leave room (see docs of the functions):
- a container id is `source_id(name)` (12 hex digits of SHA-256 of the name); `/api/containers/{id}` also
  accepts the exact name;
- histogram windows are `fromTimestamp`/`toTimestamp` (ms) or `minutes` (default 60 back from now); the bucket
  is `bucket` in milliseconds, or chosen from the window (a round step giving at most ~120 buckets, whole days
  beyond 7-day steps, so even an all-time window fits); buckets are aligned to multiples of the bucket size
  since the Unix epoch, ascending and zero-filled; an explicit `bucket` that would give more than 10 000
  buckets is a 400 INVALID_PARAMETER (the documented envelope's validation), never a longer answer;
- requests see only their tenant (X-Scope-OrgID; absent = the default tenant "");
- in a cluster, search, histogram, containers and chat answer for every ACTIVE node (cluster.py) unless
  `scope=local`; such answers say `partial` (and name `missingNodes`) when a node did not answer in time.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import __version__
from service.http.errors import HTTPError
from service.logs.search.cluster import (
    ANY_WORDS_PARAM,
    KEYS_PARAM,
    MAX_WINDOW,
    ClusterSearch,
    ClusterView,
    SearchBackend,
)
from service.logs.search.envelope import (
    handler,
    int_param,
    invalid,
    ok,
    str_param,
    tenant_of,
)
from service.logs.search.query import Filters
from service.logs.search.scope import answer, from_peer, scope_of
from service.logs.search.store import LogStore

StoreRef = LogStore | Callable[[], LogStore | None] | None
StatusProvider = Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]]

MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MAX_INT64 = (1 << 63) - 1  # SQLite's integer range: larger offsets and buckets are refused, not overflowed
MAX_BUCKETS = 10_000
DAY_MS = 86_400_000
STEPS_MS = [1_000, 5_000, 10_000, 15_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
            3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000, 86_400_000, 7 * 86_400_000]
TARGET_BUCKETS = 120


def choose_bucket(window_ms: int) -> int:
    """The smallest round step giving at most TARGET_BUCKETS buckets over the window; beyond the largest
    step (7 days), a whole number of days, so that even an all-time window stays near TARGET_BUCKETS."""
    for step in STEPS_MS:
        if window_ms / step <= TARGET_BUCKETS:
            return step
    return -(-window_ms // (TARGET_BUCKETS * DAY_MS)) * DAY_MS


def bucket_count(from_ms: int, to_ms: int, bucket_ms: int) -> int:
    """How many aligned buckets cover [from_ms, to_ms] (an unaligned window touches one more)."""
    return to_ms // bucket_ms - from_ms // bucket_ms + 1


def _store(ref: StoreRef) -> LogStore:
    store = ref() if callable(ref) and not isinstance(ref, LogStore) else ref
    if store is None or not store.running:
        raise HTTPError(503, "log store is not running")
    return store


async def filters_from(request: Request, store: SearchBackend) -> tuple[Filters, bool]:
    """Filters common to search and histogram; the flag is False when containerId names no source."""
    q = request.query_params
    tenant = tenant_of(request)
    stream = str_param(q, "stream")
    if stream is not None and stream not in ("stdout", "stderr"):
        raise invalid("stream must be stdout or stderr")
    from_ms = int_param(q, "fromTimestamp", low=0, high=MAX_MS)
    to_ms = int_param(q, "toTimestamp", low=0, high=MAX_MS)
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise invalid("fromTimestamp must not be after toTimestamp")
    source = str_param(q, "container")
    known = True
    container_id = str_param(q, "containerId", max_len=200)
    if container_id:
        name = await store.resolve_source_id(tenant, container_id)
        if name is None or (source is not None and source != name):
            known = False
        source = name
    query = str_param(q, "query") or ""
    any_words: tuple[str, ...] = ()
    if from_peer(request):  # the chat tools' error-words filter, passed between nodes only
        any_words = tuple(w for w in (str_param(q, ANY_WORDS_PARAM) or "").split(",") if w)
    return Filters(tenant=tenant, query=query, source=source, stream=stream or None, from_ms=from_ms,
                   to_ms=to_ms, any_words=any_words), known


def search_routes(store: StoreRef, *, status_provider: StatusProvider | None = None,
                  chat: Any = None, cluster: ClusterSearch | None = None) -> list[Route]:
    """Routes for /api/*. `store` is the store or a function returning the current one (None when disabled);
    `status_provider` adds the node's parts (KV, cluster) to /api/status; `chat` answers POST /api/chat;
    `cluster` makes the answers cluster-wide."""

    def backend(request: Request) -> tuple[SearchBackend, ClusterView | None]:
        local = _store(store)
        scope = scope_of(request)
        view = cluster.view(local, scope, request.headers) if cluster is not None else None
        return (view if view is not None else local), view

    @handler
    async def status(request: Request) -> Response:
        current = store() if callable(store) and not isinstance(store, LogStore) else store
        parts: dict[str, Any] = {}
        if status_provider is not None:
            got = status_provider()
            parts = await got if inspect.isawaitable(got) else got
        store_status = current.status() if current is not None else {"running": False}
        healthy = store_status["running"] and store_status.get("healthy", True) and all(
            not isinstance(v, dict) or v.get("healthy", True) is not False for v in parts.values())
        return ok({"service": "scraping-service", "version": __version__,
                   "status": "healthy" if healthy else "degraded", "store": store_status, **parts})

    @handler
    async def version(request: Request) -> Response:
        return ok({"name": "scraping-service", "version": __version__})

    @handler
    async def search(request: Request) -> Response:
        s, view = backend(request)
        q = request.query_params
        # A peer asks for the first offset+limit entries of a cluster-wide page.
        limit = int_param(q, "limit", 50, low=1, high=MAX_WINDOW if from_peer(request) else 100)
        offset = int_param(q, "offset", 0, low=0, high=MAX_INT64)
        if view is not None and offset + limit > MAX_WINDOW:  # type: ignore[operator]
            raise invalid(f"offset: offset+limit must be at most {MAX_WINDOW} for a cluster-wide search "
                          "(narrow the time range, or use scope=local)")
        f, known = await filters_from(request, s)
        started = time.perf_counter()
        total, logs = await s.search(f, limit, offset) if known else (0, [])  # type: ignore[arg-type]
        if from_peer(request) and q.get(KEYS_PARAM) == "1":
            logs = [{"id": e["id"], "timestamp": e["timestamp"]} for e in logs]
        return answer({"total": total, "returned": len(logs), "limit": limit, "offset": offset,
                       "processingTimeMs": round((time.perf_counter() - started) * 1000, 1), "logs": logs}, view)

    @handler
    async def histogram(request: Request) -> Response:
        s, view = backend(request)
        q = request.query_params
        f, known = await filters_from(request, s)
        minutes = int_param(q, "minutes", low=1, high=366 * 24 * 60)
        if minutes is not None and (f.from_ms is not None or f.to_ms is not None):
            raise invalid("minutes cannot be combined with fromTimestamp/toTimestamp")
        now = int(time.time() * 1000)
        if f.from_ms is None and f.to_ms is None:
            f.to_ms = now
            f.from_ms = now - (minutes or 60) * 60_000 + 1
        elif f.from_ms is None:
            f.from_ms = max(0, f.to_ms - 60 * 60_000 + 1)  # type: ignore[operator]
        elif f.to_ms is None:
            f.to_ms = max(now, f.from_ms)
        window = f.to_ms - f.from_ms + 1  # type: ignore[operator]
        bucket = int_param(q, "bucket", low=1, high=MAX_INT64)
        if bucket is None:
            bucket = choose_bucket(window)
        elif bucket_count(f.from_ms, f.to_ms, bucket) > MAX_BUCKETS:  # type: ignore[arg-type]
            raise invalid(f"bucket too small: at most {MAX_BUCKETS} buckets per window")
        if known:
            buckets, total = await s.histogram(f, bucket)
        else:
            first = (f.from_ms // bucket) * bucket  # type: ignore[operator]
            buckets, total = [{"timestamp": b, "count": 0} for b in range(first, f.to_ms + 1, bucket)], 0
        return answer({"buckets": buckets, "total": total, "bucket": bucket, "fromTimestamp": f.from_ms,
                       "toTimestamp": f.to_ms}, view)

    @handler
    async def log_containers(request: Request) -> Response:
        s, view = backend(request)
        return answer([{"name": x["name"], "count": x["count"], "lastSeen": x["lastSeen"], "id": x["id"]}
                       for x in await s.sources(tenant_of(request))], view)

    @handler
    async def containers(request: Request) -> Response:
        s, view = backend(request)
        return answer(await s.sources(tenant_of(request)), view)

    @handler
    async def container(request: Request) -> Response:
        s, view = backend(request)
        ident = request.path_params["id"]
        found = await s.source(tenant_of(request), ident)
        if found is None:
            if view is not None and view.missing:
                raise HTTPError(503, f"container {ident} not found on the nodes that answered; "
                                     f"not answering: {', '.join(sorted(view.missing))}",
                                     headers={"Retry-After": "1"})
            raise HTTPError(404, f"container {ident} not found")
        return answer(found, view)

    routes = [
        Route("/api/status", status, methods=["GET"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/logs/search", search, methods=["GET"]),
        Route("/api/logs/histogram", histogram, methods=["GET"]),
        Route("/api/logs/containers", log_containers, methods=["GET"]),
        Route("/api/containers", containers, methods=["GET"]),
        Route("/api/containers/{id}", container, methods=["GET"]),
    ]
    if chat is not None:
        routes.append(Route("/api/chat", handler(chat.handle), methods=["POST"]))
    return routes
