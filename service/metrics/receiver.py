"""`POST /agent/api/v1/metrics/instance/{instance}/write`: Prometheus remote write into an instance's WAL.

Answers as Prometheus' write handler does (204 empty; 400 text/plain with the reason), plus 413 for a body
or a declared decoded size over the limits, checked before anything is decompressed. The WAL record is the
received compressed body; 204 only once an fsync covers it (group commit), 500 when the WAL failed.
Headers are not required: senders that omit Content-Encoding or the remote write version are accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import unquote_to_bytes

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from service.http.body import read_body
from service.http.errors import HTTPError, guarded, not_found, render_text
from service.http.paths import InvalidName, decode_name
from service.log import get_logger
from service.metrics.decode_pool import DecodePool, DecodeUnavailable
from service.metrics.forward import FORWARDED_HEADER
from service.metrics.ingest import CodecError, IngestStats, SeriesChecker, TooLarge
from service.metrics.routing import Verdict, WriteRouter
from service.wal import Position, WALError

PREFIX = "/agent/api/v1/metrics/instance/"
SUFFIX = "/write"
DEFAULT_MAX_BODY_BYTES = 32 << 20
DEFAULT_MAX_DECODED_BYTES = 128 << 20
_RETRY = {"Retry-After": "1"}

REQUESTS = Counter("agent_remote_write_receiver_requests_total",
                   "Remote write requests received, by HTTP status code.", ["code"])
DURATION = Histogram("agent_remote_write_receiver_request_duration_seconds",
                     "Time from the request's arrival to its answer (204 includes the WAL fsync).", ["code"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
RECEIVED_BYTES = Counter("agent_remote_write_receiver_received_bytes_total",
                         "Compressed bytes of remote write bodies accepted into a WAL.")
SAMPLES = Counter("agent_remote_write_receiver_samples_total", "Samples in accepted remote write requests.")
WORKER_DECODES = Counter("agent_remote_write_receiver_worker_decodes_total",
                         "Remote write bodies decoded and checked by an ingest worker process.")
_log = get_logger("metrics.receiver")


class Appender(Protocol):
    async def append(self, body: bytes, *, samples: int = 0, exemplars: int = 0) -> Position: ...


def instance_name(request: Request) -> str | None:
    """The URL-decoded instance name from the raw path, or None when the path is not `.../{name}/write`
    with one non-empty segment (`a%2Fb` is the instance `a/b`)."""
    raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
    raw = raw.split("?", 1)[0]
    if not raw.startswith(PREFIX) or not raw.endswith(SUFFIX):
        return None
    segment = raw[len(PREFIX):-len(SUFFIX)]
    if not segment or "/" in segment:
        return None
    try:
        return decode_name(segment)
    except InvalidName:
        return unquote_to_bytes(segment).decode("utf-8", "replace")  # unknown anyway: answered 400


def _http_error(exc: Exception, request: Request) -> HTTPError | None:
    """A body that is not a valid (or too large a) WriteRequest, and a WAL that failed, as Prometheus'
    write handler answers them (text/plain)."""
    if isinstance(exc, TooLarge):
        return HTTPError(413, str(exc))
    if isinstance(exc, CodecError):
        return HTTPError(400, str(exc))
    if isinstance(exc, DecodeUnavailable):  # an ingest worker died: nothing stored, the sender retries
        return HTTPError(503, str(exc), _RETRY)
    if isinstance(exc, WALError):
        name = instance_name(request)
        _log.error("WAL append failed", instance=name, err=str(exc))
        return HTTPError(500, f"failed to append to the WAL of instance {name}: {exc}")
    return None


class WriteReceiver:
    def __init__(self, lookup: Callable[[str], Appender | None], *,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
                 checker: SeriesChecker | None = None, offload_bytes: int = 1 << 20,
                 router: WriteRouter | None = None, decode_pool: DecodePool | None = None) -> None:
        """``offload_bytes``: bodies at least this large are decoded in a worker thread so one huge
        request does not stall the event loop (snappy and upb release the GIL only partly).
        ``router`` says where a write for an instance not running here goes (none: such a write is refused).
        ``decode_pool``: ingest worker processes that decode the bodies they take (service.metrics.decode_pool);
        the WAL append and the answer stay here."""
        self.lookup = lookup
        self.router = router or WriteRouter()
        self.max_body_bytes = max_body_bytes
        self.max_decoded_bytes = max_decoded_bytes
        self.checker = checker or SeriesChecker()
        self.offload_bytes = offload_bytes
        self.decode_pool = decode_pool

    async def handle(self, request: Request) -> Response:
        start = time.perf_counter()
        response = await self._handle(request)
        code = str(response.status_code)
        REQUESTS.labels(code).inc()
        DURATION.labels(code).observe(time.perf_counter() - start)
        return response

    @guarded(render_text, _http_error)
    async def _handle(self, request: Request) -> Response:
        name = instance_name(request)
        if name is None:
            return await not_found(request)
        instance = self.lookup(name)
        if instance is None:
            return await self._not_here(request, name)
        body = await read_body(request, self.max_body_bytes)
        stats = await self._decode(body)
        if not stats.series and not stats.metadata:
            return Response(status_code=204)  # nothing to keep (Prometheus accepts it too)
        await instance.append(body, samples=stats.samples, exemplars=stats.exemplars)
        RECEIVED_BYTES.inc(len(body))
        SAMPLES.inc(stats.samples)
        return Response(status_code=204)

    async def _not_here(self, request: Request, name: str) -> Response:
        """A write for an instance this node does not run: forward it to its owner, ask the sender to
        retry while it is being placed or while nobody can tell whether it exists, or refuse it when the
        store says no such config exists."""
        destination = await self.router.route(name)
        if destination.verdict is Verdict.ABSENT:
            raise HTTPError(400, f"instance {name} does not exist")
        if destination.verdict is Verdict.UNREACHABLE:
            # e.g. restarted while the store is down: the placement is empty, and a 400 would make the
            # sender drop samples for an instance that may well exist
            raise HTTPError(503, f"cannot tell whether instance {name} exists: the config store is "
                                 "unreachable; retry", _RETRY)
        forwarded = FORWARDED_HEADER.lower() in request.headers
        if destination.verdict is Verdict.PEER and not forwarded:
            body = await read_body(request, self.max_body_bytes)
            raw_path = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
            query = request.scope.get("query_string", b"").decode("latin-1")
            return await self.router.forward(destination, raw_path + (f"?{query}" if query else ""),
                                             request.headers, body)
        # Owned here and starting, owned by nobody for a moment, or nodes disagree about the owner: the
        # config exists, so the sender keeps the samples and retries.
        raise HTTPError(503, f"instance {name} is not running on any node yet (it is being placed); retry", _RETRY)

    async def _decode(self, body: bytes) -> IngestStats:
        pool = self.decode_pool
        if pool is not None and pool.takes(body):
            WORKER_DECODES.inc()
            return await pool.decode(body, self.max_decoded_bytes)
        if len(body) >= self.offload_bytes:
            return await asyncio.to_thread(self.checker.decode, body, self.max_decoded_bytes)
        return self.checker.decode(body, self.max_decoded_bytes)
