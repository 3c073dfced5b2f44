"""The store's write path in the node: pushes handed to the writer process, in order, never dropped.

In a node the store is fed by its WAL indexer (indexer.py), which reads the logs WAL from the store's own
position and queues each batch of records with the WAL position it ends at; it stops reading while
`max_entries` are queued, so a store that falls behind lags in the WAL, not in memory, and loses nothing.
`enqueue()` feeds pushes directly (a store without a WAL: tests and tools). A sender thread moves queued
batches into the process's pipe; a receiver thread takes its acknowledgements, so `committed` is the WAL
position everything before which is in the database, and `wait_idle` knows when everything queued is written.
When the process dies (killed, or a database error it cannot get past) `alive` turns False and the reason is
kept; the indexer restarts it (`restart`).
"""

from __future__ import annotations

import collections
import multiprocessing
import threading
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from service.log import get_logger
from service.logs.search import writer_proc
from service.logs.search.writer_proc import DELETED_AGE, DELETED_SIZE, SHARED_SLOTS, SIZE, SKIPPED, WRITTEN

_log = get_logger("logs.search")

WRITTEN_ENTRIES = Counter("logs_search_written_entries_total", "Entries written to the search store.",
                          ["instance_name"])
SKIPPED_ENTRIES = Counter("logs_search_skipped_entries_total",
                          "Entries the search store could not index (a timestamp or record it cannot hold); "
                          "the writer skips them and goes on.", ["instance_name"])
QUEUED_ENTRIES = Gauge("logs_search_queue_entries", "Entries read from the WAL and waiting to be written to the "
                       "search store.", ["instance_name"])
DELETED = Counter("logs_search_retention_deleted_entries_total", "Entries deleted by search store retention.",
                  ["instance_name", "reason"])
STORE_BYTES = Gauge("logs_search_store_bytes", "Bytes in use by the search store database.", ["instance_name"])
SERIES = (WRITTEN_ENTRIES, SKIPPED_ENTRIES, QUEUED_ENTRIES, STORE_BYTES)  # labelled by instance only (not DELETED)

_SEND_MAX_ENTRIES = 5_000  # pushes per pipe message
_CTX = multiprocessing.get_context("spawn")  # never fork a process with running threads and an event loop

Push = tuple[str, bytes, int]  # (tenant, snappy PushRequest, entries)
Position = tuple[int, int]  # a logs WAL position (segment, offset)


@dataclass(slots=True)
class _Batch:
    pushes: list[Push]
    entries: int
    position: Position | None  # the WAL position after its last record (None: fed directly)
    first_ms: int  # append time of its first record (ms), for the lag in seconds


class Writer:
    """Owns the queue, the writer process and the two threads talking to it."""

    def __init__(self, path: str, *, source_label: str, instance: str, max_age_s: float, max_bytes: int,
                 tick_interval: float, nice: int = 10) -> None:
        self.path = path
        self.source_label = source_label
        self.instance = instance
        self._proc_args = (max_age_s, max_bytes, tick_interval, nice)
        self._queue: collections.deque[_Batch] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._seq = 0  # last sequence handed to the process
        self._sent: collections.deque[tuple[int, Position | None, int]] = collections.deque()  # not yet acked
        self._in_flight = False  # a message taken from the queue and not yet in the pipe
        self._stopping = False
        self._dead = False
        self.committed: Position | None = None  # WAL position everything before which is written
        self.last_error = ""
        self.database_failed = False  # the process reported a database error (not a record's fault)
        self.restarts = 0
        self._proc: Any = None
        self._pipe: Any = None
        self._threads: list[threading.Thread] = []
        self.shared = _CTX.Array("q", SHARED_SLOTS, lock=False)
        self._reported = [0] * SHARED_SLOTS
        self._gauge = QUEUED_ENTRIES.labels(instance)

    # ------------------------------------------------------------------------------------------- callers

    def enqueue(self, tenant: str, body: bytes, entries: int) -> None:
        """Queue one push fed directly (`body`: a snappy-compressed PushRequest of `entries` lines)."""
        if entries > 0:
            self.enqueue_batch([(tenant, body, entries)], entries, None, int(time.time() * 1000))

    def enqueue_batch(self, pushes: list[Push], entries: int, position: Position | None, first_ms: int) -> None:
        """Queue pushes read from the WAL, ending at `position`. Never blocks; the caller bounds the queue."""
        with self._cond:
            self._queue.append(_Batch(pushes, entries, position, first_ms))
            self._queued += entries
            self._cond.notify_all()

    def wait_room(self, max_entries: int, timeout: float) -> bool:
        """Block until fewer than `max_entries` are queued (or the process died); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._queued < max_entries or self._dead, timeout)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._dead

    @property
    def written(self) -> int:
        """Entries committed so far (by every writer process of this store)."""
        return int(self.shared[WRITTEN])

    @property
    def skipped(self) -> int:
        return int(self.shared[SKIPPED])

    def oldest_pending_ms(self) -> int | None:
        """Append time of the oldest record queued or sent and not yet committed."""
        with self._cond:
            if self._sent:
                return self._sent[0][2]
            return self._queue[0].first_ms if self._queue else None

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything queued so far is committed (tests, benchmarks, shutdown)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (not self._queue and not self._in_flight and not self._sent) or self._dead, timeout) \
                and not self._dead

    def report(self) -> None:
        """Bring the node's metrics up to the process's counters."""
        now = list(self.shared)
        for slot, counter in ((WRITTEN, WRITTEN_ENTRIES.labels(self.instance)),
                              (SKIPPED, SKIPPED_ENTRIES.labels(self.instance)),
                              (DELETED_AGE, DELETED.labels(self.instance, "age")),
                              (DELETED_SIZE, DELETED.labels(self.instance, "size"))):
            if now[slot] > self._reported[slot]:
                counter.inc(now[slot] - self._reported[slot])
        STORE_BYTES.labels(self.instance).set(now[SIZE])
        self._reported = now
        self._gauge.set(self._queued)

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        max_age_s, max_bytes, tick_interval, nice = self._proc_args
        self._pipe, child = _CTX.Pipe(duplex=True)
        self._proc = _CTX.Process(
            target=writer_proc.run, name=f"logs-search-{self.instance}", daemon=True,
            args=(self.path, self.source_label, self.instance, max_age_s, max_bytes, tick_interval, child,
                  self.shared, nice))
        self._proc.start()
        child.close()
        with self._cond:
            self._stopping = False
            self._dead = False
        self._threads = [threading.Thread(target=self._send_loop, name=f"logs-search-send-{self.instance}",
                                          daemon=True),
                         threading.Thread(target=self._recv_loop, name=f"logs-search-recv-{self.instance}",
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within the deadline: `timeout` in all), then stop the process and the threads.
        What is left unwritten stays in the WAL for the next start."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._proc is None:
            return
        self._threads[0].join(max(0.0, deadline - time.monotonic()))
        self._proc.join(max(0.1, deadline - time.monotonic()))
        if self._proc.is_alive():
            _log.warning("search store writer did not stop in time; killed", instance=self.instance)
            self._proc.kill()
            self._proc.join(5)
        self._pipe.close()  # ends the receiver, and a sender still blocked in send()
        for t in self._threads:
            t.join(5)
        self._threads = []
        self._proc = None
        with self._cond:
            self._dead = True
            self._cond.notify_all()
        self.report()

    def restart(self, timeout: float = 5.0) -> None:
        """Replace a dead (or stuck) process: what was queued or unacknowledged is forgotten, and the caller
        feeds the new one again from the position the database holds."""
        self.stop(timeout)
        with self._cond:
            self._queue.clear()
            self._queued = 0
            self._sent.clear()
            self._in_flight = False
            self.committed = None
            self.database_failed = False
            self.last_error = ""
        self.restarts += 1
        self.start()

    # ------------------------------------------------------------------------------------------- threads

    def _died(self, reason: str) -> None:
        with self._cond:
            if not self._dead and not self._stopping:
                self.last_error = self.last_error or reason
                _log.error("search store writer process is gone", err=self.last_error, instance=self.instance)
            self._dead = True
            self._in_flight = False
            self._cond.notify_all()

    def _send_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._queue or self._stopping or self._dead)
                    if self._dead:
                        return
                    if not self._queue:
                        self._pipe.send(None)  # stopping with nothing left: the process finishes and exits
                        return
                    pushes: list[Push] = []
                    n = 0
                    position: Position | None = None
                    first_ms = self._queue[0].first_ms
                    while self._queue and n < _SEND_MAX_ENTRIES:
                        batch = self._queue.popleft()
                        pushes += batch.pushes
                        n += batch.entries
                        position = batch.position if batch.position is not None else position
                    self._queued -= n
                    self._in_flight = True
                    self._seq += 1
                    seq = self._seq
                    self._sent.append((seq, position, first_ms))
                self._pipe.send((seq, pushes, position))  # blocks while the process is busy
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()
        except (OSError, ValueError) as exc:  # the process went away
            self._died(f"pipe closed: {exc}")

    def _recv_loop(self) -> None:
        while True:
            try:
                msg = self._pipe.recv()
            except (EOFError, OSError):
                self._died("the writer process exited")
                return
            if isinstance(msg, tuple):
                self.last_error = str(msg[1])
                self.database_failed = True
                _log.error("writing to the search store failed", err=msg[1], instance=self.instance)
                continue
            self.report()
            with self._cond:
                while self._sent and self._sent[0][0] <= msg:
                    _, position, _ = self._sent.popleft()
                    if position is not None:
                        self.committed = position
                if not self._sent:
                    self.last_error = ""
                self._cond.notify_all()
