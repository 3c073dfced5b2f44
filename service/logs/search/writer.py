"""The store's write path in the node: a bounded queue of pushes handed to the writer process.

`enqueue()` is all the ingest path pays: an append under a lock, one per push (the push's snappy bytes are
passed along as they are; the writer process decodes them). When the queue holds more than `max_entries`,
the oldest pushes are dropped and counted — the logs WAL is the durability point and the store can be
rebuilt from it, so ingest is never slowed by search. A sender thread moves pushes into the process's pipe
(blocking there while the process is busy, which is what lets the queue bound act); a receiver thread
takes its acknowledgements, so `wait_idle` knows when everything queued so far is committed.
"""

from __future__ import annotations

import collections
import multiprocessing
import threading
from typing import Any

from prometheus_client import Counter, Gauge

from service.log import get_logger
from service.logs.search import writer_proc
from service.logs.search.writer_proc import DELETED_AGE, DELETED_SIZE, SHARED_SLOTS, SIZE, WRITTEN

_log = get_logger("logs.search")

DROPPED_BATCHES = Counter("logs_search_dropped_batches_total",
                          "Batches dropped because the search store's write queue was full.", ["instance"])
DROPPED_ENTRIES = Counter("logs_search_dropped_entries_total",
                          "Entries dropped because the search store's write queue was full.", ["instance"])
WRITTEN_ENTRIES = Counter("logs_search_written_entries_total", "Entries written to the search store.",
                          ["instance"])
QUEUED_ENTRIES = Gauge("logs_search_queue_entries", "Entries waiting to be written to the search store.",
                       ["instance"])
DELETED = Counter("logs_search_retention_deleted_entries_total", "Entries deleted by search store retention.",
                  ["instance", "reason"])
STORE_BYTES = Gauge("logs_search_store_bytes", "Bytes in use by the search store database.", ["instance"])

_SEND_MAX_ENTRIES = 5_000  # pushes per pipe message
_CTX = multiprocessing.get_context("spawn")  # never fork a process with running threads and an event loop


class Writer:
    """Owns the queue, the writer process and the two threads talking to it."""

    def __init__(self, path: str, *, source_label: str, max_entries: int, instance: str, max_age_s: float,
                 max_bytes: int, tick_interval: float, nice: int = 10) -> None:
        self.path = path
        self.source_label = source_label
        self.max_entries = max_entries
        self.instance = instance
        self._proc_args = (max_age_s, max_bytes, tick_interval, nice)
        self._queue: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._sent_seq = 0  # last sequence handed to the process
        self._acked_seq = 0  # last sequence it committed
        self._in_flight = 0  # pushes taken from the queue and not yet sent
        self._stopping = False
        self._proc: Any = None
        self._pipe: Any = None
        self._threads: list[threading.Thread] = []
        self.shared = _CTX.Array("q", SHARED_SLOTS, lock=False)
        self._reported = [0] * SHARED_SLOTS
        self.dropped_entries = 0
        self._dropped = DROPPED_ENTRIES.labels(instance)
        self._dropped_batches = DROPPED_BATCHES.labels(instance)
        self._gauge = QUEUED_ENTRIES.labels(instance)

    # ------------------------------------------------------------------------------------------- callers

    def enqueue(self, tenant: str, body: bytes, entries: int) -> None:
        """Queue one push (`body`: a snappy-compressed PushRequest holding `entries` lines). Never blocks."""
        if entries <= 0:
            return
        with self._cond:
            self._queue.append((tenant, body, entries))
            self._queued += entries
            while self._queued > self.max_entries and len(self._queue) > 1:
                _, _, n = self._queue.popleft()
                self._queued -= n
                self.dropped_entries += n
                self._dropped.inc(n)
                self._dropped_batches.inc()
            self._cond.notify_all()

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def written(self) -> int:
        """Entries committed so far (by every writer process of this store)."""
        return int(self.shared[WRITTEN])

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything queued so far is committed (tests, benchmarks, shutdown)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and not self._in_flight and self._acked_seq >= self._sent_seq, timeout)

    def report(self) -> None:
        """Bring the node's metrics up to the process's counters."""
        now = list(self.shared)
        for slot, counter in ((WRITTEN, WRITTEN_ENTRIES.labels(self.instance)),
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
            self._acked_seq = self._sent_seq
        self._threads = [threading.Thread(target=self._send_loop, name=f"logs-search-send-{self.instance}",
                                          daemon=True),
                         threading.Thread(target=self._recv_loop, name=f"logs-search-recv-{self.instance}",
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within the deadline), then stop the process and the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._proc is None:
            return
        self._threads[0].join(timeout)
        self._proc.join(timeout)
        if self._proc.is_alive():
            _log.warning("search store writer did not stop in time; killed", instance=self.instance)
            self._proc.kill()
            self._proc.join(5)
        self._threads[1].join(timeout)  # the process is gone: its end of the pipe is closed, recv ends
        self._pipe.close()
        self._threads = []
        self._proc = None
        with self._cond:
            self._acked_seq = self._sent_seq
            self._cond.notify_all()
        self.report()

    # ------------------------------------------------------------------------------------------- threads

    def _send_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._queue or self._stopping)
                    if not self._queue:
                        self._pipe.send(None)  # stopping with nothing left: the process finishes and exits
                        return
                    pushes = []
                    n = 0
                    while self._queue and n < _SEND_MAX_ENTRIES:
                        push = self._queue.popleft()
                        n += push[2]
                        pushes.append(push)
                    self._queued -= n
                    self._in_flight = len(pushes)
                    self._sent_seq += 1
                    seq = self._sent_seq
                self._pipe.send((seq, pushes))  # blocks while the process is busy: the queue bound acts
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
        except (OSError, ValueError) as exc:  # the process went away
            _log.error("search store writer process is gone", err=str(exc), instance=self.instance)
            with self._cond:
                self._in_flight = 0
                self._acked_seq = self._sent_seq
                self._cond.notify_all()

    def _recv_loop(self) -> None:
        while True:
            try:
                msg = self._pipe.recv()
            except (EOFError, OSError):
                return
            if isinstance(msg, tuple):
                _log.error("writing to the search store failed; batch dropped", err=msg[1], instance=self.instance)
                continue
            self.report()
            with self._cond:
                self._acked_seq = max(self._acked_seq, msg)
                self._cond.notify_all()
