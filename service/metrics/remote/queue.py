"""The remote_write sender of one endpoint: tail the WAL, batch, rewrite if needed, send, retry, advance.

Two tasks joined by a bounded queue of prepared batches (Prometheus' ``queue_manager.go`` in small):

- the *reader* follows the WAL from the endpoint's progress marker and cuts batches of whole records, up to
  ``max_samples_per_send`` samples per shard or :data:`MAX_BATCH_BYTES` decoded bytes, or whatever arrived within
  ``batch_send_deadline`` of a batch's first record. It rewrites series only when external_labels or
  write_relabel_configs are set; otherwise the stored bytes are forwarded. Prepared batches wait in a queue
  bounded by ``capacity`` samples, so preparing the next batch overlaps sending the current one;
- the *sender* sends batches strictly one after another (split across shards, see ``shards``), retrying
  recoverable failures with jittered exponential backoff (``min_backoff``..``max_backoff``, and at least the
  server's Retry-After: :mod:`service.http.retry`, shared with the Loki client) until they succeed. A refused
  request of several records is split in two and each half sent on its own, down to one record and then to
  one series, so a part the remote refuses (one that slipped into the WAL malformed, or a series it rejects)
  is dropped and counted alone (``agent_remote_write_isolated_total``) instead of taking its batch with it.
  Only then does it advance the acknowledged position. The marker is stored at most every
  ``marker_interval`` seconds, when idle and on stop (:class:`~service.wal.consumer.MarkerPolicy`), so after
  a crash at most that much is sent twice and nothing acknowledged into the WAL is lost. The number of shards
  moves between ``min_shards`` and ``max_shards`` with what the sender saw (see ``resharding``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import snappy

from service.config.secrets import redact_url
from service.http.client import HTTPClient
from service.http.retry import Backoff
from service.log import RepeatedWarning, get_logger
from service.metrics.config.instance import DEFAULT_REMOTE_FLUSH_DEADLINE
from service.metrics.config.remote_write import RemoteWriteConfig
from service.metrics.recordcounts import COUNTS
from service.metrics.remote import metrics as m
from service.metrics.remote.batch import RECORD_WRITE_REQUEST, Batch, Counts, count, decode_record
from service.metrics.remote.client import NonRecoverableError, RecoverableError, WriteClient
from service.metrics.remote.codec import CodecError
from service.metrics.remote.resharding import ShardController
from service.metrics.remote.rewrite import SeriesRewriter
from service.metrics.remote.shards import split_by_owner, split_by_series, top_level_fields
from service.wal import WAL, Position, Record, WALTail
from service.wal.consumer import MarkerPolicy, finish_within

MAX_BATCH_BYTES = 16 << 20  # decoded bytes per batch, whatever the sample count
_READ_RECORDS = 64
_READ_BYTES = 8 << 20
ISOLATE_SENDS = 64  # refused requests a batch may spend on isolating what was refused; the rest is dropped
CONTENT_REFUSALS = frozenset({400, 413, 422})  # answers about what a request holds: worth splitting it


def _where(position: Position | None) -> dict[str, object]:
    """A WAL position as log fields (segment=, offset=), not a tuple's repr."""
    if position is None:
        return {"position": "start of the WAL"}
    return {"segment": position.segment, "offset": position.offset}


class RemoteWriteQueue:
    """Sends what a WAL holds to one remote_write endpoint. ``start()`` once, ``stop(deadline)`` once: a
    :class:`~service.wal.consumer.WALConsumer`."""

    def __init__(self, wal: WAL, cfg: RemoteWriteConfig, *, instance: str, external_labels: dict[str, str],
                 http: HTTPClient | None = None, marker_interval: float = 1.0,
                 shard_update_interval: float = 10.0,
                 flush_deadline: float = float(DEFAULT_REMOTE_FLUSH_DEADLINE)) -> None:
        self.wal = wal
        self.cfg = cfg
        self.instance = instance
        self.name = cfg.name or redact_url(cfg.url)
        self.url = redact_url(cfg.url)  # for labels, logs and status: never the password (as Prometheus)
        self.log = get_logger("remote_write", instance=instance, remote_name=self.name, url=self.url)
        self.marker_interval = marker_interval
        self.flush_deadline = flush_deadline
        qc = cfg.queue_config
        self.max_samples = max(1, qc.max_samples_per_send)
        self.deadline = float(qc.batch_send_deadline)
        self.min_backoff = max(0.001, float(qc.min_backoff))
        self.max_backoff = max(self.min_backoff, float(qc.max_backoff))
        self._resharding = ShardController(qc.min_shards, qc.max_shards, interval=shard_update_interval)
        rewriter = SeriesRewriter(external_labels, cfg.write_relabel_configs)
        self._rewriter = rewriter if rewriter.active else None
        self._client = WriteClient(cfg, http)
        self._progress = MarkerPolicy(wal.marker(self.name), marker_interval)
        self._labels = self.labels = (self.name, self.url, instance)  # of its self metrics
        self._batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(1, qc.capacity // self.max_samples))
        self._records: deque[Record] = deque()
        self._drain = asyncio.Event()
        self._tail: WALTail | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.acked_position: Position | None = None  # end of the last batch answered (or dropped)
        self.samples_sent = self.samples_failed = self.samples_retried = self.samples_dropped = 0
        self.samples_pending = 0
        self.batches_sent = self.batches_failed = 0
        self.bad_records = self.skipped_records = 0
        self.highest_read_ts_ms = self.highest_sent_ts_ms = 0
        self.last_error = ""
        self._retry_warning = RepeatedWarning(self.log, "failed to send batch, retrying")
        self._set_gauges()

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the marker and start following the WAL from it."""
        if self._tasks:
            raise RuntimeError("queue already started")
        start = self.acked_position = await self._progress.load()
        self._tail = WALTail(self.wal, start)
        self._resharding.start(time.monotonic())
        tag = f"{self.instance}/{self.name}"
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"rw-read[{tag}]"),
                       asyncio.create_task(self._send_loop(), name=f"rw-send[{tag}]")]
        self._log(logging.INFO, "remote_write queue started", **_where(start))

    @property
    def stored_position(self) -> Position | None:
        """What the marker holds: the WAL keeps every record after it for this endpoint."""
        return self._progress.stored

    async def stop(self, flush_deadline: float | None = None) -> None:
        """Send what is durable in the WAL now, for at most ``flush_deadline`` seconds (default: the instance's
        ``remote_flush_deadline``); then stop and store the marker. Returns within the deadline (a few ms for
        the marker aside)."""
        if not self._tasks:
            await self._client.close()
            return
        self._drain.set()
        deadline = self.flush_deadline if flush_deadline is None else flush_deadline
        cut = await finish_within(self._tasks, deadline - min(0.25, deadline * 0.1))
        if self._tail is not None:
            self._tail.close()
        await self._store_marker(force=True)
        await self._client.close()
        self.samples_pending = 0
        m.SAMPLES_PENDING.labels(*self._labels).set(0)
        self._log(logging.INFO, "remote_write queue stopped", **_where(self.acked_position),
                  unsent_batches=cut)

    def cut_flush(self) -> None:
        """End a running :meth:`stop` now (the next instance of the config sends the rest from the marker)."""
        for task in self._tasks:
            task.cancel()

    @property
    def shards(self) -> int:
        return self._resharding.shards

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not all(t.done() for t in self._tasks)

    def status(self) -> dict[str, object]:
        """A summary for status pages."""
        return {
            "name": self.name, "url": self.url, "instance": self.instance, "running": self.running,
            "acked_position": list(self.acked_position) if self.acked_position else None,
            "samples_sent": self.samples_sent, "samples_failed": self.samples_failed,
            "samples_retried": self.samples_retried, "samples_dropped": self.samples_dropped,
            "samples_pending": self.samples_pending, "batches_sent": self.batches_sent,
            "batches_failed": self.batches_failed, "shards": self.shards, "last_error": self.last_error,
        }

    # --- reader -------------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            while True:
                batch = await self._next_batch()
                if batch is None:
                    break
                self.samples_pending += batch.counts.samples
                m.SAMPLES_PENDING.labels(*self._labels).set(self.samples_pending)
                await self._batches.put(batch)
        except Exception:
            self.log.exception("remote_write reader failed")
        await self._batches.put(None)

    async def _next_batch(self) -> Batch | None:
        """The next batch, or None when draining and caught up (or the WAL is closed)."""
        batch: Batch | None = None
        due = 0.0
        while True:
            if not self._records:
                assert self._tail is not None
                recs = self._tail.read_available(_READ_RECORDS, _READ_BYTES)
                if not recs:
                    now = time.monotonic()
                    if self._drain.is_set() or (batch is not None and now >= due):
                        return batch
                    recs = await self._wait_records(None if batch is None else due - now)
                    if recs is None:
                        return batch
                self._records.extend(recs)
                continue
            rec = self._records.popleft()
            if batch is None:
                batch = Batch(end=rec.end)
                due = time.monotonic() + self.deadline
            self._add(batch, rec)
            if batch.counts.samples >= self.max_samples * self.shards or batch.raw_bytes >= MAX_BATCH_BYTES:
                # Full only when more is waiting: a lone record over the limit (a scrape of more series than
                # max_samples_per_send) does not mean the queue is behind, and must not add shards.
                if not self._records:
                    assert self._tail is not None
                    self._records.extend(self._tail.read_available(_READ_RECORDS, _READ_BYTES))
                batch.full = bool(self._records)
                return batch

    async def _wait_records(self, timeout: float | None) -> list[Record] | None:
        """Records once some are durable; [] on timeout or drain; None when the WAL is closed and read."""
        assert self._tail is not None
        nxt = asyncio.ensure_future(self._tail.next_batch(_READ_RECORDS, _READ_BYTES))
        drain = asyncio.ensure_future(self._drain.wait())
        try:
            await asyncio.wait((nxt, drain), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
            nxt.cancel()  # a no-op when it has finished: its records are taken below
        try:
            recs = await nxt
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return []
        return recs if recs else None

    def _add(self, batch: Batch, rec: Record) -> None:
        batch.records += 1
        batch.end = rec.end
        if rec.type != RECORD_WRITE_REQUEST:
            self.skipped_records += 1
            return
        try:
            raw = decode_record(rec)
            noted = COUNTS.get(rec.payload)  # what the scrape noted when it wrote the record
            if self._rewriter is not None and (noted is None or self._rewriter.relabeler):
                noted = None  # rules may drop series: count what is left
                before = count(raw, highest=False).samples
                raw = self._rewriter.rewrite(raw)
                counts = count(raw)
                batch.dropped_samples += before - counts.samples
            else:  # external labels alone keep every series and sample: the noted counts hold
                if self._rewriter is not None:
                    raw = self._rewriter.rewrite(raw)
                counts = count(raw) if noted is None else Counts(*noted.counts)
        except CodecError as exc:
            batch.bad_records += 1
            self.bad_records += 1
            m.ISOLATED.labels(*self._labels, "unreadable").inc()
            self._log(logging.ERROR, "unreadable WAL record skipped", error=str(exc), segment=rec.position[0],
                      offset=rec.position[1])
            return
        if batch.records == 1 and self._rewriter is None:
            batch.stored_body = rec.payload
        if batch.owners is not None:
            if noted is not None:
                batch.owners.append(noted.owner)
                batch.part_counts.append(counts)
                batch.payloads.append(rec.payload if self._rewriter is None else None)  # None: rewritten
            else:
                batch.owners = None
        batch.parts.append(raw)
        batch.raw_bytes += len(raw)
        batch.counts.add(counts)
        if counts.highest_ts_ms > self.highest_read_ts_ms:
            self.highest_read_ts_ms = counts.highest_ts_ms
            m.HIGHEST_TIMESTAMP.labels(*self._labels).set(counts.highest_ts_ms / 1000)

    # --- sender -------------------------------------------------------------------------------------
    async def _send_loop(self) -> None:
        last = False
        while not last:
            try:  # idle intervals count too: the shards go down while nothing is sent
                # (asyncio.timeout, not wait_for: a wait_for cancelled as its inner get() times out can hang)
                async with asyncio.timeout(self._resharding.interval):
                    batch = await self._batches.get()
            except TimeoutError:
                self._update_shards()
                await self._store_marker()  # idle: what the last batches acknowledged goes to the marker
                continue
            if batch is None:
                return
            # Batches cut before the shards went up are smaller than a round can now send: join those waiting.
            limit = self.max_samples * self.shards
            while batch.counts.samples < limit and batch.raw_bytes < MAX_BATCH_BYTES and not self._batches.empty():
                later = self._batches.get_nowait()
                if later is None:
                    last = True
                    break
                batch.extend(later)
            started = time.monotonic()
            try:
                await self._send_batch(batch)
            finally:
                self.samples_pending -= batch.counts.samples
                m.SAMPLES_PENDING.labels(*self._labels).set(self.samples_pending)
            self.acked_position = batch.end
            await self._store_marker()
            self._resharding.observe(time.monotonic() - started, batch.counts.samples, batch.full)
            self._update_shards()

    def _update_shards(self) -> None:
        if self._resharding.update(time.monotonic(), self._wal_bytes()) is not None:
            shards, reason = self._resharding.history[-1]
            m.SHARDS.labels(*self._labels).set(shards)
            m.SHARDS_DESIRED.labels(*self._labels).set(shards)
            self._log(logging.INFO, "remote_write shards changed", shards=shards, reason=reason)

    async def _send_batch(self, batch: Batch) -> None:
        if batch.dropped_samples:
            self.samples_dropped += batch.dropped_samples
            m.SAMPLES_DROPPED.labels(*self._labels).inc(batch.dropped_samples)
        if not batch.parts:
            return
        # Isolating refused parts may cost two requests per record (each is someone's acknowledged write) plus
        # a fixed allowance for splitting one record's series; a remote that refuses everything costs no more.
        budget = ISOLATE_SENDS + 2 * batch.records
        if self.shards == 1 or batch.counts.samples <= self.max_samples:  # it fits one request
            await self._deliver(batch.parts, batch.counts, [budget], batch.body())
            return
        if batch.owners is not None and len(batch.owners) == len(batch.parts):  # scrape records: by target
            split = split_by_owner(batch.owners, [c.samples for c in batch.part_counts], self.shards)
            await asyncio.gather(*(self._deliver([batch.parts[i] for i in idx], self._sum(batch, idx), [budget],
                                                 batch.payloads[idx[0]] if len(idx) == 1 else None)
                                   for idx in split))
            return
        raws = [raw for raw in split_by_series(batch.raw(), self.shards) if raw]
        await asyncio.gather(*(self._deliver([raw], count(raw), [budget]) for raw in raws))

    @staticmethod
    def _sum(batch: Batch, idx: list[int]) -> Counts:
        total = Counts()
        for i in idx:
            total.add(batch.part_counts[i])
        return total

    async def _deliver(self, parts: list[bytes], counts: Counts, budget: list[int], body: bytes | None = None
                       ) -> None:
        """Send the concatenated ``parts`` (decoded WriteRequests). When the remote refuses them for good, send
        each half on its own, records first and then the series of a single record, until what is refused
        stands alone; then drop it and count it. Only refusals about content (400, 413, 422) are split: a 429
        or 401 is about every request, so what it refused is dropped whole. ``budget`` (shared by one batch's
        calls) bounds the refused requests spent on this, for a remote that refuses everything; a part that is
        accepted gives its cost back, so many bad records in one large batch are all isolated (the good ones
        around them are acknowledged writes and must arrive)."""
        refused = await self._send_one(snappy.compress(b"".join(parts)) if body is None else body, counts)
        if refused is None:
            budget[0] += 2  # a part the remote took gives back what its split cost: only refusals use it up
            return
        if len(parts) == 1 and refused.status in CONTENT_REFUSALS:
            parts = top_level_fields(parts[0])
        if len(parts) == 1 or budget[0] < 2 or refused.status not in CONTENT_REFUSALS:
            self._count_failed(counts)
            m.ISOLATED.labels(*self._labels, "refused").inc(len(parts))
            self._log(logging.ERROR, "non-recoverable error, dropping data", error=str(refused),
                      samples=counts.samples, parts=len(parts))
            return
        budget[0] -= 2
        half = len(parts) // 2
        for piece in (parts[:half], parts[half:]):
            await self._deliver(piece, self._counts(piece), budget)

    @staticmethod
    def _counts(parts: list[bytes]) -> Counts:
        total = Counts()
        for raw in parts:
            try:
                total.add(count(raw))
            except CodecError:
                continue
        return total

    async def _send_one(self, body: bytes, counts: Counts) -> NonRecoverableError | None:
        """Send until answered 2xx (None) or refused for good (the error); recoverable failures are retried,
        in place."""
        labels = self._labels
        backoff: Backoff | None = None  # made on the first failure: nothing extra per batch sent at once
        while True:
            started = time.monotonic()
            try:
                await self._client.store(body)
            except RecoverableError as exc:
                m.SENT_BATCH_DURATION.labels(*labels).observe(time.monotonic() - started)
                self._count_retry(counts)
                backoff = backoff or Backoff(self.min_backoff, self.max_backoff)
                delay = backoff.next(exc.retry_after)
                self.last_error = str(exc)
                self._retry_warning.failed(error=str(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            except NonRecoverableError as exc:
                m.SENT_BATCH_DURATION.labels(*labels).observe(time.monotonic() - started)
                self.last_error = str(exc)
                return exc
            m.SENT_BATCH_DURATION.labels(*labels).observe(time.monotonic() - started)
            self._count_sent(counts, len(body))
            self._retry_warning.recovered("remote_write recovered: batches are accepted again")
            return None

    def _count_sent(self, c: Counts, size: int) -> None:
        labels = self._labels
        self.samples_sent += c.samples
        self.batches_sent += 1
        m.SAMPLES.labels(*labels).inc(c.samples)
        m.EXEMPLARS.labels(*labels).inc(c.exemplars)
        m.HISTOGRAMS.labels(*labels).inc(c.histograms)
        m.METADATA.labels(*labels).inc(c.metadata)
        m.BYTES.labels(*labels).inc(size)
        if c.highest_ts_ms > self.highest_sent_ts_ms:
            self.highest_sent_ts_ms = c.highest_ts_ms
            m.HIGHEST_SENT_TIMESTAMP.labels(*labels).set(c.highest_ts_ms / 1000)

    def _count_retry(self, c: Counts) -> None:
        labels = self._labels
        self.samples_retried += c.samples
        m.SAMPLES_RETRIED.labels(*labels).inc(c.samples)
        m.EXEMPLARS_RETRIED.labels(*labels).inc(c.exemplars)
        m.HISTOGRAMS_RETRIED.labels(*labels).inc(c.histograms)
        m.METADATA_RETRIED.labels(*labels).inc(c.metadata)

    def _count_failed(self, c: Counts) -> None:
        labels = self._labels
        self.samples_failed += c.samples
        self.batches_failed += 1
        m.SAMPLES_FAILED.labels(*labels).inc(c.samples)
        m.EXEMPLARS_FAILED.labels(*labels).inc(c.exemplars)
        m.HISTOGRAMS_FAILED.labels(*labels).inc(c.histograms)
        m.METADATA_FAILED.labels(*labels).inc(c.metadata)

    # --- helpers --------------------------------------------------------------------------------------
    def _wal_bytes(self) -> tuple[int, int] | None:
        """(the WAL's durable end, what this endpoint has acknowledged) as byte offsets across segments."""
        acked = self.acked_position
        if acked is None:
            return None
        size = self.wal.segment_size
        end = self.wal.durable_position
        return end[0] * size + end[1], acked[0] * size + acked[1]

    async def _store_marker(self, force: bool = False) -> None:
        try:
            await self._progress.store(self.acked_position, force=force)
        except OSError as exc:
            self._log(logging.ERROR, "cannot store WAL progress marker", error=str(exc))

    def _set_gauges(self) -> None:
        qc = self.cfg.queue_config
        m.SHARDS.labels(*self._labels).set(self.shards)
        m.SHARDS_DESIRED.labels(*self._labels).set(self.shards)
        m.SHARDS_MIN.labels(*self._labels).set(qc.min_shards)
        m.SHARDS_MAX.labels(*self._labels).set(qc.max_shards)
        m.SAMPLES_PENDING.labels(*self._labels).set(0)

    def _log(self, level: int, msg: str, **fields: object) -> None:
        self.log.log(level, msg, **fields)
