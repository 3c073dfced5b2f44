"""The threads that run every WAL's group commits: a few shared threads, not one per WAL.

A WAL submits a flush job due at a moment (now, or when its sync pacing allows the next fsync); a free
thread runs it then. A node with thousands of mostly idle instances so holds a handful of threads instead of
one per instance. Each WAL keeps at most one job queued or running (see ``writer``), so its records are
written and synced in order exactly as a dedicated thread did.

``AGENT_WAL_FLUSH_THREADS`` sets the number of threads (default 8: fsyncs of different WALs overlap, and a
slow disk never holds every WAL behind one fsync).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

from service.log import get_logger

_log = get_logger("wal")

DEFAULT_THREADS = 8


class FlushExecutor:
    """Runs jobs at or after their due time (``time.monotonic``) on up to ``threads`` daemon threads."""

    def __init__(self, threads: int = DEFAULT_THREADS) -> None:
        self.size = max(1, threads)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit_at(self, due: float, job: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), job))
            if len(self._heap) > self._idle and len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"wal-flush-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while True:
                    if self._heap:
                        delay = self._heap[0][0] - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
                self._idle -= 1
                _, _, job = heapq.heappop(self._heap)
                if self._heap:
                    self._cond.notify()  # another thread may be asleep on a later (or no) due time
            try:
                job()
            except Exception:  # a job never takes its thread with it
                _log.exception("WAL flush job failed")

    @property
    def threads(self) -> int:
        return len(self._threads)


def _threads_from_env() -> int:
    try:
        return int(os.environ.get("AGENT_WAL_FLUSH_THREADS", "") or DEFAULT_THREADS)
    except ValueError:
        return DEFAULT_THREADS


SHARED = FlushExecutor(_threads_from_env())
