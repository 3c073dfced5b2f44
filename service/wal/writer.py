"""The WAL writer: numbered segment files, cheap appends, and group commit on a shared flush executor.

``append`` neither frames, copies nor writes: it assigns the record its position, queues it and
returns. A flush job (at most one per WAL queued or running, on the threads of ``flush_executor`` that all
WALs share) takes everything queued, writes it with ``writev`` and fsyncs once, then wakes every waiter
whose record that fsync covered (group commit). Successive fsyncs start at least ``sync_interval`` apart, so
under load many records share one fsync, while a lone record is synced at once. A record appended with a
``linger`` lets its fsync wait that long for others to share it (scrapes, whose loops have nobody waiting on
them, take one fsync per linger instead of one per scrape at low rates); any record without one, a barrier or
close brings the fsync forward for every record pending.

On a failed write or fsync every record not yet durable fails with :class:`WALError`, and the segment is
truncated back to its last durable offset; if even that fails, writing moves on to a new segment (see
``segment_writer``), so a reader never sees a failed record in the middle of a segment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import os
import threading
import time
from typing import Any

from service.log import get_logger

from . import metrics
from .batch_io import run_batched
from .errors import WALError
from .flush_executor import SHARED, FlushExecutor
from .marker import ProgressMarker
from .notify import SyncNotifier
from .record import HEADER_SIZE, MAX_PAYLOAD, Position, check_type, encode_header
from .retention import TruncateResult, truncate
from .segment import SegmentSummary, list_segments, repair_segment, scan_segment, segment_path
from .segment_writer import SegmentWriter

DEFAULT_SEGMENT_SIZE = 64 << 20
_CUT = None  # queued in place of a record: close the segment and start the next one


class WAL:
    """A write-ahead log in one directory. Create with :meth:`WAL.open`; stop with :meth:`close`."""

    def __init__(
        self,
        directory: str,
        *,
        segment_size: int,
        sync_interval: float,
        fsync: bool,
        instance: str,
        max_pending_bytes: int,
        executor: FlushExecutor | None = None,
    ) -> None:
        self.directory = directory
        self.instance = instance
        self.log = get_logger("wal", instance=instance)  # passed to the parts that log for this WAL
        self.segment_size = segment_size
        self.sync_interval = sync_interval
        self.max_pending_bytes = max_pending_bytes
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._notifier = SyncNotifier()
        # Logical state, owned by appenders (under the lock).
        self._seg = 0
        self._off = 0
        self._seq = 0
        self._pending: list[tuple[int, int, bytes, int] | None] = []
        self._pending_bytes = 0
        self._pending_due = math.inf  # monotonic time by which the pending records want their fsync
        self._closing = False
        # The flush job (under the lock): queued (with its due time and token), or running.
        self._executor = executor or SHARED
        self._scheduled = False
        self._running = False
        self._due = 0.0
        self._token = 0
        # Published by the flush job (under the lock).
        self._synced_seq = 0
        self._durable = Position(0, 0)
        self._failed = (0, 0)  # (lo, hi]: sequence numbers of the last failed batch
        self._last_error: WALError | None = None
        self._next_sync_at = 0.0
        self._file = SegmentWriter(directory, instance, self.log, fsync=fsync)  # owned by the flush job

    # --- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        directory: str,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        sync_interval: float = 0.005,
        fsync: bool = True,
        instance: str | None = None,
        max_pending_bytes: int = 32 << 20,
    ) -> WAL:
        """Open (creating if needed) the WAL in ``directory`` and repair a torn tail.

        Blocking (it reads the last segments); call it via ``asyncio.to_thread`` from a busy loop.
        """
        if segment_size < HEADER_SIZE + 1:
            raise ValueError("segment_size too small")
        wal = cls(
            directory,
            segment_size=segment_size,
            sync_interval=sync_interval,
            fsync=fsync,
            instance=instance if instance is not None else os.path.basename(os.path.normpath(directory)),
            max_pending_bytes=max_pending_bytes,
        )
        try:
            wal._recover()
        except OSError as e:
            raise WALError(e.errno, f"WAL {directory}: cannot open: {e}") from e
        return wal

    @classmethod
    async def aopen(cls, directory: str, **kwargs: Any) -> WAL:
        """:meth:`open` off the event loop, batched with other opens queued meanwhile (see ``batch_io``): a
        node starting thousands of instances pays one thread hop per batch, not per WAL. A WAL opened for a
        caller cancelled meanwhile is closed."""
        return await run_batched(functools.partial(cls.open, directory, **kwargs), discard=WAL.close)

    def _recover(self) -> None:
        try:
            os.mkdir(self.directory)
        except FileExistsError:
            segments = list_segments(self.directory)
        except FileNotFoundError:  # a missing parent (the WAL root)
            os.makedirs(self.directory, exist_ok=True)
            segments = list_segments(self.directory)
        else:
            segments = []  # just made: nothing to list, repair or size up
        self._recover_segments(segments)

    def _recover_segments(self, segments: list[int]) -> None:
        for number in segments[-2:]:
            end = repair_segment(segment_path(self.directory, number))
            if not end.clean:
                metrics.CORRUPTIONS.labels(self.instance).inc()
                self.log.warning("cut corrupt WAL tail", segment=number, offset=end.offset, reason=end.reason)
        self._file.add_closed_bytes(sum(os.path.getsize(segment_path(self.directory, n)) for n in segments))
        last = segments[-1] if segments else 0
        if last and os.path.getsize(segment_path(self.directory, last)) == 0:
            self._file.reopen(last)  # reuse an empty last segment instead of piling up empty files
        else:
            self._file.create(last + 1)
        self._seg = self._file.segment
        self._durable = Position(self._seg, 0)
        metrics.STORAGE_SIZE.labels(self.instance).set(self._file.storage_bytes())

    def close(self, timeout: float | None = 30.0) -> None:
        """Make everything appended durable, wait for the last flush job, end every tail. Idempotent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._schedule_locked()
            while self._pending or self._scheduled or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WALError(f"WAL {self.directory}: the last flush did not finish within {timeout}s")
                self._cond.wait(remaining)
        self._file.close()
        with self._lock:
            events = self._notifier.subscribed()
        self._notifier.dispatch([], events)

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop. A WAL with nothing to flush closes in a batch with
        others (see ``batch_io``: closing thousands of idle WALs then costs one thread hop per batch); one
        with a flush to wait for closes on its own thread, so a slow disk holds up no other close."""
        with self._lock:
            idle = not (self._pending or self._scheduled or self._running)
        if idle:
            await run_batched(self.close)
        else:
            await asyncio.to_thread(self.close)

    @property
    def fsync_count(self) -> int:
        """fsyncs of segment data so far (each may cover many records)."""
        return self._file.fsync_count

    @property
    def closed(self) -> bool:
        return self._closing

    # --- appending ---------------------------------------------------------------------------------
    def append(self, rtype: int, payload: bytes, *, linger: float = 0.0) -> Position:
        """Queue a record; returns its position at once. Durable only after a later sync, at the latest
        ``linger`` seconds from now (or when the sync pacing next allows one, if later).

        ``payload`` is kept by reference until written: pass ``bytes`` (anything else is copied).
        """
        return self._append(rtype, payload, None, linger)

    async def append_durable(self, rtype: int, payload: bytes, *, linger: float = 0.0) -> Position:
        """Append a record and return its position once an fsync covers it. With ``linger`` that fsync may
        wait up to that many seconds for other records to share it.

        Raises :class:`WALError` if it could not be made durable. Cancelling the caller does not
        withdraw the record.
        """
        fut = asyncio.get_running_loop().create_future()
        pos = self._append(rtype, payload, fut, linger)
        await fut
        return pos

    def _append(self, rtype: int, payload: bytes, fut: asyncio.Future | None, linger: float) -> Position:
        check_type(rtype)
        if type(payload) is not bytes:
            payload = bytes(payload)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"record of {len(payload)} bytes is too large")
        size = HEADER_SIZE + len(payload)
        time_ms = time.time_ns() // 1_000_000
        due = time.monotonic() + linger if linger > 0 else 0.0
        with self._lock:
            if self._closing:
                raise WALError(f"WAL {self.directory} is closed")
            if self._off and self._off + size > self.segment_size:
                self._pending.append(_CUT)
                self._seg += 1
                self._off = 0
            pos = Position(self._seg, self._off)
            self._off += size
            self._seq += 1
            self._pending.append((rtype, time_ms, payload, self._seq))
            self._pending_bytes += size
            if fut is not None:
                self._notifier.add(self._seq, fut)
            if due < self._pending_due:
                self._pending_due = due
                self._schedule_locked()
            elif not self._scheduled or self._pending_bytes >= self.max_pending_bytes:
                self._schedule_locked()
        return pos

    def cut(self) -> None:
        """End the current segment; the next record starts a new one (no-op if it is empty)."""
        with self._lock:
            if self._closing:
                raise WALError(f"WAL {self.directory} is closed")
            if self._off:
                self._pending.append(_CUT)
                self._seg += 1
                self._off = 0
                self._pending_due = 0.0
                self._schedule_locked()

    async def sync_barrier(self) -> Position:
        """Return once everything appended so far is durable (the durable end position).

        Raises :class:`WALError` if the most recent record failed to become durable.
        """
        fut = asyncio.get_running_loop().create_future()
        if self._barrier(fut):
            await fut
        return self._barrier_result()

    def sync(self, timeout: float | None = None) -> Position:
        """Blocking :meth:`sync_barrier` for threads (never call it on the event loop)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._barrier(fut):
            fut.result(timeout)
        return self._barrier_result()

    def _barrier(self, fut: asyncio.Future | concurrent.futures.Future) -> bool:
        with self._lock:
            if self._seq <= self._synced_seq:
                return False
            self._notifier.add(self._seq, fut)
            if self._pending:
                self._pending_due = 0.0
            self._schedule_locked()
            return True

    def _barrier_result(self) -> Position:
        lo, hi = self._failed
        if lo < self._seq <= hi and self._last_error is not None:
            raise self._last_error
        return self._durable

    # --- what readers need -------------------------------------------------------------------------
    @property
    def durable_position(self) -> Position:
        """End of the durable part of the WAL: readers never go past it."""
        return self._durable

    @property
    def current_segment(self) -> int:
        """The lowest segment number that may still be written to (retention never deletes it)."""
        return min(self._file.segment, self._durable.segment)

    def segment_limit(self, segment: int) -> int | None:
        """Valid length of a finished segment whose tail could not be truncated after a failure."""
        return self._file.limits.get(segment)

    def subscribe(self, event: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        """Set ``event`` on ``loop`` after every sync (and on close); used by tails."""
        with self._lock:
            self._notifier.subscribe(loop, event)

    def unsubscribe(self, event: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._notifier.unsubscribe(loop, event)

    def marker(self, consumer: str) -> ProgressMarker:
        """The progress marker of ``consumer`` (e.g. a remote_write endpoint name)."""
        return ProgressMarker(self.directory, consumer)

    def segment_summary(self, segment: int) -> SegmentSummary:
        """Counts and times of a finished segment (cached; scanned once from disk if not written here)."""
        summary = self._file.summaries.get(segment)
        if summary is None or segment >= self.current_segment:
            summary, _ = scan_segment(segment_path(self.directory, segment), verify=False)
            if segment < self.current_segment:
                self._file.summaries[segment] = summary
        return summary

    def truncate(
        self,
        min_keep_time_ms: int,
        max_age_ms: int,
        consumers: list[Position | None],
        *,
        now_ms: int | None = None,
    ) -> TruncateResult:
        """Apply retention (see :func:`service.wal.retention.truncate`). Blocking file I/O."""
        result = truncate(self, min_keep_time_ms, max_age_ms, consumers, now_ms=now_ms)
        self._file.add_closed_bytes(-result.bytes_deleted)
        for number in result.segments_deleted:
            self._file.summaries.pop(number, None)
            self._file.limits.pop(number, None)
        metrics.STORAGE_SIZE.labels(self.instance).set(self._file.storage_bytes())
        return result

    # --- the flush job ----------------------------------------------------------------------------
    def _schedule_locked(self) -> None:
        """Queue a flush job if records wait (call under the lock): now when a lone record arrives, the
        WAL closes or too many bytes wait, else once the pacing allows the next fsync and the records'
        linger is over (the earliest of them: `_pending_due`). A running job
        re-queues itself when it ends, so there is never more than one job running per WAL."""
        if self._running or not self._pending:
            return
        now = time.monotonic()
        urgent = self._closing or self._pending_bytes >= self.max_pending_bytes
        due = now if urgent else max(now, self._next_sync_at, self._pending_due)
        if self._scheduled and self._due <= due:
            return
        self._token += 1
        token = self._token
        self._scheduled, self._due = True, due
        self._executor.submit_at(due, lambda: self._job(token))

    def _job(self, token: int) -> None:
        with self._cond:
            if token != self._token or self._running or not self._scheduled:
                return  # superseded by an earlier-due job
            self._scheduled = False
            if not self._pending:
                self._cond.notify_all()
                return
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            self._pending_due = math.inf
            self._running = True
            self._next_sync_at = time.monotonic() + self.sync_interval
        try:
            self._flush(batch)
        finally:
            with self._cond:
                self._running = False
                self._schedule_locked()
                self._cond.notify_all()

    def _flush(self, batch: list[tuple[int, int, bytes, int] | None]) -> None:
        ok_seq = last_seq = self._synced_seq
        iov: list[bytes | memoryview] = []
        try:
            file = self._file
            file.ensure_open()
            for op in batch:
                if op is _CUT:
                    file.write(iov)
                    iov = []
                    file.sync()
                    ok_seq = last_seq
                    file.roll()
                    continue
                rtype, time_ms, payload, last_seq = op
                iov.append(encode_header(rtype, time_ms, payload))
                iov.append(payload)
                file.note(rtype, time_ms, len(payload))
            file.write(iov)
            file.sync()
        except Exception as e:  # an OSError from the disk, or a bug: either way nobody may hang
            if not isinstance(e, OSError):
                self.log.exception("WAL flush failed")
            self._fail(e, ok_seq)
            return
        with self._lock:
            self._synced_seq = last_seq
            self._durable = Position(self._file.segment, self._file.offset)
            done = self._notifier.take_upto(last_seq)
            events = self._notifier.subscribed()
        self._notifier.dispatch(done, events)
        records = len(batch) - batch.count(_CUT)
        if records:
            metrics.RECORDS_APPENDED.labels(self.instance).inc(records)
        metrics.STORAGE_SIZE.labels(self.instance).set(self._file.storage_bytes())

    def _fail(self, exc: Exception, ok_seq: int) -> None:
        """Fail every record not yet durable and put the segment back at its last durable offset."""
        metrics.WRITES_FAILED.labels(self.instance).inc()
        errno = exc.errno if isinstance(exc, OSError) else None
        err = WALError(errno, f"WAL {self.directory}: write failed: {exc}")
        self.log.error("WAL write failed", err=str(exc))
        self._file.rewind()
        with self._lock:
            hi = self._seq
            self._pending, self._pending_bytes = [], 0
            self._pending_due = math.inf
            self._seg, self._off = self._file.segment, self._file.offset
            self._synced_seq = hi
            self._failed = (ok_seq, hi)
            self._last_error = err
            self._durable = Position(self._file.segment, self._file.offset)
            ok = self._notifier.take_upto(ok_seq)
            failed = self._notifier.take_upto(hi)
            events = self._notifier.subscribed()
        self._notifier.dispatch(ok, {})
        self._notifier.dispatch(failed, events, err)
