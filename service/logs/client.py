"""One Loki endpoint (``clients[]`` entry): tails the logs WAL from its progress marker and sends batches.

Promtail / ``loki.write`` semantics: batches close at ``batchsize`` bytes or ``batchwait`` after their first
record; one request per tenant (the entry's tenant over ``tenant_id``); snappy protobuf with
``Content-Encoding: snappy``; 429, 5xx and connection errors are retried with jittered exponential backoff
(``min_period`` doubling to ``max_period``, ``max_retries`` attempts in total, 0 = forever), any other 4xx
drops the batch at once. A ``Retry-After`` on a 429 or 5xx is honoured (waiting at least that long, at most
5 minutes): the backoff is :mod:`service.http.retry`, shared with remote_write. The marker is stored after every
batch is sent or dropped (a :class:`~service.wal.consumer.MarkerPolicy` of interval 0; start and stop follow
that module's contract), so an outage or a restart loses nothing: what was not acknowledged is read again from
the WAL.

The client task survives every error: a marker write that fails (disk full) is counted and retried with the
next batch (at worst a restart sends some lines again), and anything unexpected is logged, counted
(``loki_write_client_errors_total``) and followed, after a jittered backoff, by a fresh WAL tail from the
last position sent. ``status()`` says whether it is failing and why. Credentials in the URL
(``https://user:pass@host/...``) become a basic Authorization header and take precedence over
``basic_auth``, as in Promtail (Go's client sets the URL's before the basic-auth round tripper, which then
leaves an existing header alone); they never appear in logs or metric labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from service.config.secrets import url_host
from service.http.client import HTTPClient
from service.http.retry import Backoff, NonRecoverableError, RecoverableError, parse_retry_after
from service.log import RepeatedWarning, get_logger
from service.logs import metrics
from service.logs.batch import Batch, ExternalLabels, TenantBatch, encode_tenant_batch
from service.logs.config import ClientConfig
from service.wal import WAL, WALTail
from service.wal.consumer import MarkerPolicy, finish_within
from service.wal.record import Position

_READ_RECORDS = 1000
_RESTART_MIN, _RESTART_MAX = 0.5, 30.0  # backoff after an unexpected error


def split_userinfo(url: str) -> tuple[str, str | None]:
    """(the URL without ``user:pass@``, a basic Authorization header value from it or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    header = aiohttp.encode_basic_auth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=netloc)), header


def redacted(text: str) -> str:
    """``text`` (a URL or a client name) with a URL password shown as ``xxxxx``, as Prometheus shows it."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:xxxxx@{parts.netloc.rsplit('@', 1)[1]}"))


class LokiClient:
    def __init__(self, cfg: ClientConfig, wal: WAL, instance: str) -> None:
        self.cfg = cfg
        self.wal = wal
        self.instance = instance
        self.name = cfg.display_name()  # redacted: for logs and status
        self.url, self._url_auth = split_userinfo(cfg.url)  # the URL's credentials are sent as basic auth
        self.host = url_host(cfg.url)  # the `host` label: never the URL's userinfo
        # unchanged key, so markers survive upgrades; stored after every batch
        self._progress = MarkerPolicy(wal.marker(f"loki:{cfg.name or cfg.url}"), 0.0)
        self.http = HTTPClient(cfg, timeout=float(cfg.timeout))
        self.external = ExternalLabels(cfg.external_labels)
        self.consumed_bytes = 0  # WAL bytes read since start (for the instance's back-pressure bound)
        self._log = get_logger("logs.client", instance=instance, client=redacted(self.name))
        # a Loki that keeps failing is one warning a minute with the count, and one line when it recovers
        self._failing = RepeatedWarning(self._log, "error sending batch to Loki, will retry")
        self._reason = ""
        self._task: asyncio.Task[None] | None = None
        self._tail: WALTail | None = None
        self._stopping = asyncio.Event()
        self.sent: Position | None = None  # end of the last batch sent (or dropped)
        self.errors = 0
        self.last_error = ""
        self.failing = False  # the last send or marker write failed

    # --- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._url_auth is not None and self.cfg.basic_auth is not None:
            self._log.warning("both basic_auth and credentials in the url: the url's are used, as Promtail does")
        self.sent = await self._progress.load()
        self._tail = WALTail(self.wal, self.sent)
        self._task = asyncio.create_task(self._run(), name=f"loki-client[{self.instance}/{redacted(self.name)}]")

    def status(self) -> dict[str, Any]:
        """For /api/status: healthy unless the last send or marker write failed."""
        return {"name": redacted(self.name), "host": self.host, "healthy": not self.failing,
                "errors": self.errors, "lastError": self.last_error, "running": self._task is not None
                and not self._task.done()}

    @property
    def stored_position(self) -> Position | None:
        """What the marker holds: the WAL keeps every record after it for this client."""
        return self._progress.stored

    async def stop(self, flush_deadline: float | None = None) -> None:
        """Send what is durable in the WAL for at most ``flush_deadline`` seconds (default: the client's
        ``drain_timeout``), then stop; unsent data stays in the WAL for the next start. Never raises."""
        timeout = float(self.cfg.drain_timeout) if flush_deadline is None else flush_deadline
        self._stopping.set()
        if self._tail is not None:
            self._tail.close()
        if self._task is not None:
            await finish_within([self._task], timeout)  # shutdown goes on, within its deadline
            self._task = None
        with contextlib.suppress(Exception):
            await self.http.close()

    def cut_flush(self) -> None:
        """End a running :meth:`stop` now (what was not sent is sent by the next start, from the marker)."""
        if self._task is not None:
            self._task.cancel()

    # --- the loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        """Send until stopped; after an unexpected error, back off and tail again from the last sent batch."""
        backoff = Backoff(_RESTART_MIN, _RESTART_MAX)
        while True:
            assert self._tail is not None
            try:
                await self._loop(self._tail)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error("unexpected", exc)
                self._log.error("Loki client failed; resuming after a backoff", err=self.last_error)
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff.next())
            if self._stopping.is_set():
                return
            self._tail.close()
            self._tail = WALTail(self.wal, self.sent)

    async def _loop(self, tail: WALTail) -> None:
        while True:
            batch = await self._fill(tail)
            if not batch:
                await self._store_marker()
                return
            await self._send_batch(batch)
            assert batch.end is not None
            self.sent = batch.end
            await self._store_marker()

    async def _store_marker(self) -> None:
        """Store the sent position; a failure (disk full) is counted and retried with the next batch."""
        if self.sent is None or self.sent == self._progress.stored:
            return
        try:
            await self._progress.store(self.sent)
        except OSError as exc:
            self._error("marker_write", exc)
            self._log.warning("storing the WAL progress marker failed; will retry", err=self.last_error)
            return
        self.failing = False

    def _error(self, reason: str, exc: BaseException | str) -> None:
        self.errors += 1
        self.failing = True
        self.last_error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        metrics.CLIENT_ERRORS.labels(self.host, reason).inc()

    async def _fill(self, tail: WALTail) -> Batch:
        """Wait for the first record, then gather more until batchsize or batchwait (or stop)."""
        batch = Batch()
        recs = await tail.next_batch(_READ_RECORDS, int(self.cfg.batchsize))
        if not recs:
            return batch
        batch.created = time.monotonic()
        self._add(batch, recs)
        deadline = batch.created + float(self.cfg.batchwait)
        while batch.size < self.cfg.batchsize:
            recs = tail.read_available(_READ_RECORDS, max(1, int(self.cfg.batchsize) - batch.size))
            if recs:
                self._add(batch, recs)
                continue
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                break
            try:
                recs = await asyncio.wait_for(tail.next_batch(_READ_RECORDS, int(self.cfg.batchsize) - batch.size),
                                              left)
            except TimeoutError:
                break
            if not recs:
                break
            self._add(batch, recs)
        return batch

    def _add(self, batch: Batch, recs: list) -> None:
        for rec in recs:
            batch.add(rec)
            self.consumed_bytes += rec.size

    async def _send_batch(self, batch: Batch) -> None:
        for tenant, tb in batch.tenants.items():
            await self._send_tenant(tenant or self.cfg.tenant_id, tb)

    async def _send_tenant(self, tenant: str, tb: TenantBatch) -> None:
        body = encode_tenant_batch(tb, self.external)
        backoff = self.cfg.backoff_config
        waits = Backoff(float(backoff.min_period), float(backoff.max_period))
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._post(body, tenant)
            except (RecoverableError, NonRecoverableError) as exc:
                failure = exc
            else:
                self._failing.recovered("Loki accepts batches again")
                metrics.SENT_ENTRIES.labels(self.host, tenant).inc(tb.entries)
                metrics.SENT_BYTES.labels(self.host, tenant).inc(tb.size)
                if self._progress.stored == self.sent:
                    self.failing = False
                return
            status = failure.status
            self._reason = str(failure)
            self.failing = True
            self.last_error = f"HTTP {status}" if status else "connection error"
            retry = isinstance(failure, RecoverableError)
            if not retry or (backoff.max_retries > 0 and attempt >= backoff.max_retries):
                reason = "rate_limited" if status == 429 else "ingester_error"
                metrics.DROPPED_ENTRIES.labels(self.host, tenant, reason).inc(tb.entries)
                metrics.DROPPED_BYTES.labels(self.host, tenant, reason).inc(tb.size)
                self._log.error("dropping batch", status=status, reason=self._reason, entries=tb.entries,
                                attempts=attempt)
                return
            metrics.BATCH_RETRIES.labels(self.host, tenant).inc()
            wait = waits.next(failure.retry_after if isinstance(failure, RecoverableError) else None)
            self._failing.failed(status=status, reason=self._reason, retry_in=round(wait, 3))
            await asyncio.sleep(wait)

    async def _post(self, body: bytes, tenant: str) -> None:
        """Send one batch. 429, 5xx, connection and request errors raise RecoverableError (status 0 when there
        was none), any other non-2xx NonRecoverableError."""
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        for key, value in self.cfg.headers.items():
            headers.setdefault(key, value)
        start = time.perf_counter()
        status_label = "error"
        try:
            headers.update(await self.http.auth_headers())
            if self._url_auth is not None:
                headers["Authorization"] = self._url_auth
            session = await self.http.session()
            async with session.post(self.url, data=body, headers=headers,
                                    **self.http.request_options()) as resp:
                status = resp.status
                status_label = str(status)
                if status // 100 == 2:
                    return
                text = (await resp.content.read(1024)).decode("utf-8", "replace").split("\n", 1)[0]
                message = f"Loki answered {status}: {text}"
                if status == 429 or status >= 500:
                    raise RecoverableError(message, parse_retry_after(resp.headers.get("Retry-After")), status)
                raise NonRecoverableError(message, status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RecoverableError(str(exc) or type(exc).__name__) from exc
        except (ValueError, TypeError) as exc:  # a request aiohttp refuses to build: retried, then dropped
            raise RecoverableError(f"cannot build the request: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.REQUEST_DURATION_WRITE.labels(status_label, self.host, tenant).observe(
                time.perf_counter() - start)
