"""One Loki endpoint (``clients[]`` entry): tails the logs WAL from its progress marker and sends batches.

Promtail / ``loki.write`` semantics: batches close at ``batchsize`` bytes or ``batchwait`` after their first
record; one request per tenant (the entry's tenant over ``tenant_id``); snappy protobuf with
``Content-Encoding: snappy``; 429, 5xx and connection errors are retried with jittered exponential backoff
(``min_period`` doubling to ``max_period``, ``max_retries`` attempts in total, 0 = forever), any other 4xx
drops the batch at once. The marker is stored after every batch is sent or dropped, so an outage or a
restart loses nothing: what was not acknowledged is read again from the WAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import aiohttp

from service.config.secrets import url_host
from service.http.client import HTTPClient
from service.log import get_logger
from service.logs import metrics
from service.logs.batch import Batch, ExternalLabels, TenantBatch, encode_tenant_batch
from service.logs.config import ClientConfig
from service.wal import WAL, WALTail

_READ_RECORDS = 1000


class LokiClient:
    def __init__(self, cfg: ClientConfig, wal: WAL, instance: str) -> None:
        self.cfg = cfg
        self.wal = wal
        self.instance = instance
        self.name = cfg.display_name()
        self.host = url_host(cfg.url)  # the `host` label: never the URL's userinfo
        self.marker = wal.marker(f"loki:{cfg.name or cfg.url}")
        self.http = HTTPClient(cfg, timeout=float(cfg.timeout))
        self.external = ExternalLabels(cfg.external_labels)
        self.consumed_bytes = 0  # WAL bytes read since start (for the instance's back-pressure bound)
        self._log = get_logger("logs.client", instance=instance, client=self.name)
        self._task: asyncio.Task[None] | None = None
        self._tail: WALTail | None = None
        self._stopping = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._tail = self.wal.tail(self.marker.load())
        self._task = asyncio.create_task(self._run(), name=f"loki-client[{self.instance}/{self.name}]")

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Send what is durable in the WAL (up to the drain timeout), then stop; unsent data stays in the
        WAL for the next start."""
        timeout = float(self.cfg.drain_timeout) if drain_timeout is None else drain_timeout
        self._stopping.set()
        if self._tail is not None:
            self._tail.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self.http.close()

    # --- the loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._tail is not None
        tail = self._tail
        try:
            while True:
                batch = await self._fill(tail)
                if not batch:
                    return
                await self._send_batch(batch)
                assert batch.end is not None
                await self.marker.store_async(batch.end)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("Loki client stopped on an unexpected error")
            raise

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
        delay = float(backoff.min_period)
        attempt = 0
        while True:
            attempt += 1
            status = await self._post(body, tenant)
            if 200 <= status < 300:
                metrics.SENT_ENTRIES.labels(self.host, tenant).inc(tb.entries)
                metrics.SENT_BYTES.labels(self.host, tenant).inc(tb.size)
                return
            retry = status <= 0 or status == 429 or status >= 500
            if not retry or (backoff.max_retries > 0 and attempt >= backoff.max_retries):
                reason = "rate_limited" if status == 429 else "ingester_error"
                metrics.DROPPED_ENTRIES.labels(self.host, tenant, reason).inc(tb.entries)
                metrics.DROPPED_BYTES.labels(self.host, tenant, reason).inc(tb.size)
                self._log.error("dropping batch", status=status, entries=tb.entries, attempts=attempt)
                return
            metrics.BATCH_RETRIES.labels(self.host, tenant).inc()
            wait = random.uniform(delay, 2 * delay)
            delay = min(delay * 2, float(backoff.max_period))
            self._log.warning("error sending batch, will retry", status=status, retry_in=round(wait, 3))
            await asyncio.sleep(wait)

    async def _post(self, body: bytes, tenant: str) -> int:
        """The HTTP status, or 0 on a connection-level error."""
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        for key, value in self.cfg.headers.items():
            headers.setdefault(key, value)
        start = time.perf_counter()
        status_label = "error"
        try:
            headers.update(await self.http.auth_headers())
            session = await self.http.session()
            async with session.post(self.cfg.url, data=body, headers=headers,
                                    **self.http.request_options()) as resp:
                status = resp.status
                status_label = str(status)
                if status // 100 != 2:
                    text = (await resp.content.read(1024)).decode("utf-8", "replace").split("\n", 1)[0]
                    self._log.warning("Loki answered an error", status=status, body=text)
                return status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._log.warning("error sending batch", err=str(exc) or type(exc).__name__)
            return 0
        finally:
            metrics.REQUEST_DURATION_WRITE.labels(status_label, self.host, tenant).observe(
                time.perf_counter() - start)
