"""The search store's WAL consumer: it reads the logs WAL from the store's own position, like a Loki client.

Everything a logs instance acknowledged is in its WAL, so the store never drops a push: it reads records as
fast as its writer process commits them and lags in the WAL when pushes come faster (reported as
`logs_search_lag_bytes`/`_seconds` and in /api/status), then catches up. The position that counts is the one
the database holds (written in the transaction that inserts the entries, see schema.py), so after kill -9 it
resumes exactly there: no acknowledged line is lost and none is indexed twice. The WAL progress marker
(`<wal>/markers/search.json`, written at most every MARKER_INTERVAL) only keeps WAL retention from deleting
what the store has not read; a failed marker write (disk full) is counted and retried, never fatal.

A writer process that dies, or a database error (disk full, I/O), restarts the writer with jittered exponential
backoff and resumes from the database's position. A record the writer cannot index is skipped and counted
there; a record that kills the process MAX_DEATHS_AT times at the same position is skipped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import struct
import time

from prometheus_client import Counter, Gauge

from service.log import get_logger
from service.logs.record import RECORD_TYPE, decode_record
from service.logs.search.schema import connect, read_progress
from service.logs.search.writer import Push, Writer
from service.wal import WAL, WALTail
from service.wal.consumer import MarkerPolicy
from service.wal.record import Position, Record
from service.wal.segment import list_segments, segment_path

CONSUMER = "search"
READ_RECORDS = 1000
READ_BYTES = 4 << 20
MARKER_INTERVAL = 1.0
POLL = 0.5  # how often a waiting indexer looks at its writer and stores its marker
MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0
MAX_DEATHS_AT = 3
LAG_DEGRADED_SECONDS = 60.0  # /api/status says "degraded" while the store is further behind than this

LAG_BYTES = Gauge("logs_search_lag_bytes", "Bytes of the logs WAL that are durable but not yet in the search "
                  "store.", ["instance_name"])
LAG_SECONDS = Gauge("logs_search_lag_seconds", "Age of the oldest acknowledged push not yet in the search store "
                    "(0 when caught up).", ["instance_name"])
UP = Gauge("logs_search_writer_up", "1 while the search store's writer process runs, 0 while it is restarted.",
           ["instance_name"])
RESTARTS = Counter("logs_search_writer_restarts_total", "Restarts of the search store's writer after it died or "
                   "failed.", ["instance_name"])
BAD_RECORDS = Counter("logs_search_bad_records_total", "Logs WAL records the search store could not decode "
                      "(skipped).", ["instance_name"])
MARKER_ERRORS = Counter("logs_search_marker_errors_total", "Failed writes of the search store's WAL progress "
                        "marker (retried).", ["instance_name"])

_log = get_logger("logs.search")

SERIES = (LAG_BYTES, LAG_SECONDS, UP, RESTARTS, BAD_RECORDS, MARKER_ERRORS)  # each labelled by instance only


def wal_bytes_between(directory: str, start: Position, end: Position) -> int:
    """WAL bytes from `start` to `end` (segment files counted by their size on disk)."""
    if start >= end:
        return 0
    if start.segment == end.segment:
        return end.offset - start.offset
    total = end.offset - start.offset
    for number in list_segments(directory):
        if start.segment <= number < end.segment:
            with contextlib.suppress(OSError):
                total += os.path.getsize(segment_path(directory, number))
    return max(0, total)


class SearchIndexer:
    """Feeds a store's writer from a logs WAL; start()/stop() like every long-running task."""

    def __init__(self, writer: Writer, wal: WAL, db_path: str, *, instance: str, max_queue_entries: int) -> None:
        self.writer = writer
        self.wal = wal
        self.db_path = db_path
        self.instance = instance
        self.max_queue_entries = max_queue_entries
        self._progress = MarkerPolicy(wal.marker(CONSUMER), MARKER_INTERVAL)
        self.bad_records = 0
        self.marker_errors = 0
        self.lag_bytes = 0
        self.lag_seconds = 0.0
        self._start: Position | None = None  # where the current tail began
        self._caught_up_at = time.monotonic()
        self._deaths: tuple[Position | None, int] = (None, 0)
        self._skip_one = False
        self._task: asyncio.Task[None] | None = None
        self._tail: WALTail | None = None
        self._stopping = asyncio.Event()
        self._metrics = (LAG_BYTES.labels(instance), LAG_SECONDS.labels(instance), UP.labels(instance),
                         RESTARTS.labels(instance), BAD_RECORDS.labels(instance), MARKER_ERRORS.labels(instance))

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"logs-search-indexer[{self.instance}]")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop reading; write what is queued (within `timeout`), store the marker. Never raises."""
        self._stopping.set()
        if self._tail is not None:
            self._tail.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None

    async def finish(self) -> None:
        """After the writer stopped: store the final position (best effort)."""
        await self._store_marker(force=True)

    @property
    def stored_position(self) -> Position | None:
        """What the marker holds (read once when unknown): the WAL keeps every record after it for the store."""
        if self._progress.stored is None:
            self._progress.stored = self._progress.marker.load()
        return self._progress.stored

    @property
    def position(self) -> Position | None:
        """The WAL position everything before which is in the store (None: nothing known yet)."""
        committed = self.writer.committed
        return Position(*committed) if committed is not None else self._start

    # --- the loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = MIN_BACKOFF
        while not self._stopping.is_set():
            before = self.position
            try:
                await self._consume()
            except Exception as exc:
                _log.error("search indexer failed; restarting the writer", err=f"{type(exc).__name__}: {exc}",
                           instance=self.instance)
            if self._stopping.is_set():
                return
            if self.position != before:
                delay = MIN_BACKOFF  # it got somewhere: a fresh failure starts the backoff again
            self._note_death()
            self._metrics[2].set(0)
            wait = random.uniform(delay / 2, delay)
            delay = min(delay * 2, MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            try:
                await asyncio.to_thread(self.writer.restart)
            except Exception as exc:
                _log.error("search writer restart failed", err=str(exc), instance=self.instance)
                continue
            self._metrics[3].inc()

    def _note_death(self) -> None:
        """Count deaths at one position; the record there is skipped after MAX_DEATHS_AT. A database error
        (disk full, I/O) is not the record's fault: it is retried, never skipped."""
        if self.writer.database_failed:
            return
        at, count = self._deaths
        pos = self.position
        count = count + 1 if pos == at else 1
        self._deaths = (pos, count)
        if count >= MAX_DEATHS_AT:
            self._skip_one = True
            self._deaths = (None, 0)

    async def _consume(self) -> None:
        """Feed the writer from its position until stopped; raises when the writer is gone."""
        start = await asyncio.to_thread(self._resume_position)
        self._start = start
        tail = WALTail(self.wal, start)
        self._tail = tail
        if self._stopping.is_set():
            tail.close()
        try:
            while True:
                self._update_lag()
                await self._store_marker()
                if not self.writer.alive:
                    if self._stopping.is_set():
                        return
                    raise RuntimeError(self.writer.last_error or "the writer process is gone")
                if self.writer.queued >= self.max_queue_entries:
                    await asyncio.to_thread(self.writer.wait_room, self.max_queue_entries, POLL)
                    continue
                try:
                    recs = await asyncio.wait_for(tail.next_batch(READ_RECORDS, READ_BYTES), POLL)
                except TimeoutError:
                    continue
                if not recs:
                    return  # the tail was closed: stopping
                self._queue(recs)
        finally:
            tail.close()
            self._tail = None

    def _queue(self, recs: list[Record]) -> None:
        if self._skip_one:
            self._skip_one = False
            first = recs.pop(0)
            self._bad(f"the writer died {MAX_DEATHS_AT} times on the record at {tuple(first.position)}; skipped")
            if not recs:
                self.writer.enqueue_batch([], 0, tuple(first.end), first.time_ms)
                return
        pushes: list[Push] = []
        entries = 0
        for rec in recs:
            if rec.type != RECORD_TYPE:
                continue
            try:
                tenant, n, body = decode_record(rec.payload)
            except (struct.error, UnicodeDecodeError, ValueError) as exc:
                self._bad(f"undecodable record at {tuple(rec.position)}: {exc}")
                continue
            pushes.append((tenant, body, n))
            entries += n
        self.writer.enqueue_batch(pushes, entries, tuple(recs[-1].end), recs[0].time_ms)

    def _bad(self, message: str) -> None:
        self.bad_records += 1
        self._metrics[4].inc()
        _log.error("search indexer skipped a WAL record", err=message, instance=self.instance)

    def _resume_position(self) -> Position | None:
        """The database's position; else the marker's; else, for a database filled before it was fed from the
        WAL, the WAL's end (what it holds came another way); else the oldest record (None)."""
        conn = connect(self.db_path, readonly=True)
        try:
            stored = read_progress(conn)
            if stored is not None:
                return Position(*stored)
            marker = self._progress.marker.load()
            if marker is not None:
                return marker
            if conn.execute("SELECT 1 FROM logs LIMIT 1").fetchone() is not None:
                return self.wal.durable_position
            return None
        except sqlite3.Error:
            return self._progress.marker.load()
        finally:
            conn.close()

    # --- progress and lag -------------------------------------------------------------------------------
    async def _store_marker(self, *, force: bool = False) -> None:
        pos = self.writer.committed
        if pos is None:
            return
        try:
            await self._progress.store(Position(*pos), force=force)
        except OSError as exc:
            self.marker_errors += 1
            self._metrics[5].inc()
            _log.warning("storing the search store's WAL marker failed; will retry", err=str(exc),
                         instance=self.instance)

    def _update_lag(self) -> None:
        durable = self.wal.durable_position
        self.lag_bytes = wal_bytes_between(self.wal.directory, self._position_or_oldest(), durable)
        now = time.monotonic()
        if self.lag_bytes == 0:
            self._caught_up_at = now
            self.lag_seconds = 0.0
        else:
            oldest = self.writer.oldest_pending_ms()
            self.lag_seconds = max(0.0, time.time() - oldest / 1000) if oldest is not None \
                else now - self._caught_up_at
        alive = self.writer.alive
        self._metrics[0].set(self.lag_bytes)
        self._metrics[1].set(self.lag_seconds)
        self._metrics[2].set(1 if alive else 0)

    def status(self) -> dict[str, object]:
        self._update_lag()
        alive = self.writer.alive
        lagging = self.lag_seconds > LAG_DEGRADED_SECONDS
        pos = self.position
        return {"writerAlive": alive, "writerRestarts": self.writer.restarts,
                "lastError": self.writer.last_error, "lagBytes": self.lag_bytes,
                "lagSeconds": round(self.lag_seconds, 3), "lagging": lagging,
                "walPosition": None if pos is None else {"segment": pos.segment, "offset": pos.offset},
                "badRecords": self.bad_records, "markerErrors": self.marker_errors,
                "healthy": alive and not lagging}

    def caught_up(self) -> bool:
        """True when everything durable in the WAL now is in the store."""
        return self._position_or_oldest() >= self.wal.durable_position

    def _position_or_oldest(self) -> Position:
        pos = self.position
        if pos is None:
            segments = list_segments(self.wal.directory)
            pos = Position(segments[0], 0) if segments else self.wal.durable_position
        return pos
