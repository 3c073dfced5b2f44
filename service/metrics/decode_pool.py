"""Ingest worker processes: decode and check remote write bodies beside the serving process's GIL.

Decoding a 2000-series body (snappy, the protobuf views, the label checks: service.metrics.ingest) is about
two thirds of the serving process's CPU per request, and one Python process runs it on one core at a time.
A pool of worker processes runs :meth:`SeriesChecker.decode` for bodies of at least ``min_bytes``; the serving
process keeps everything else: HTTP, auth, tenant, limits read before the body, routing and forwarding,
metrics, and the one WAL writer per instance, which appends the received body and answers 2xx only after
its fsync. A worker only says what a body holds or why it is refused, so acks stay durable, each request's
series stay in their order (the record is the received body), and every WAL file keeps exactly one writer.

Workers are spawned (not forked: the serving process runs threads) when the first large body arrives, each
with its own label-set cache; until all of them have started (an interpreter import, seconds on a busy
machine), bodies decode in the serving process, so no request waits for a start. A node that never receives
a large body never starts a worker. A worker that dies (OOM kill) breaks the pool: the requests it had
answer 503 with Retry-After, and the next large body starts new workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from service import mallocpacing
from service.log import get_logger
from service.metrics.ingest import IngestStats, SeriesChecker

DEFAULT_MIN_BYTES = 32 << 10  # smaller bodies decode in the serving process: shipping them costs more
_log = get_logger("metrics.decode_pool")


class DecodeUnavailable(RuntimeError):
    """A worker died before answering: the body's fate is unknown, the sender should retry (503)."""


def cpu_limit() -> int:
    """CPUs this process may use: the cgroup v2 (or v1) CPU quota, else the affinity mask / cpu_count."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota)) if quota is not None else count


def _cgroup_quota() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, -(-int(quota) // int(period)))  # 1.5 CPUs -> 2 processes can use them
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
    except (OSError, ValueError):
        return None
    return max(1, -(-quota_us // period_us)) if quota_us > 0 and period_us > 0 else None


MIN_CPUS_FOR_WORKERS = 3


def default_workers(cpus: int | None = None) -> int:
    """One worker per CPU the node may use beyond the serving process's own; none (decode in the serving
    process) below three CPUs. Handing a body to a worker and back costs about half as much CPU as its decode
    (pipe, pickling, wake-ups: docs/benchmarks.md), which pays only where the serving process would otherwise
    be the one saturated core while others are free. On two CPUs, decoding in place gave the most samples
    per CPU-second in every measured round, and about the same throughput as one or two workers."""
    n = cpu_limit() if cpus is None else cpus
    return n - 1 if n >= MIN_CPUS_FOR_WORKERS else 0


_checker: SeriesChecker | None = None


def _init_worker(parent: int) -> None:
    """Worker setup. SIGINT and SIGTERM sent to the whole group (Ctrl-C, systemd's stop) are left to the
    serving process, which finishes its requests and then stops the pool; the parent watch covers its death."""
    global _checker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mallocpacing.pace()  # bodies are decompressed here: the same buffers as in the serving process
    _checker = SeriesChecker()
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when the serving process is gone (kill -9 included): its pipe does not tell, since
    every worker holds the write end of the shared task queue too."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _started() -> None:
    """A no-op: when it returns, the worker that ran it has started."""


def _decode_in_worker(body: bytes, max_decoded_bytes: int) -> IngestStats:
    assert _checker is not None
    return _checker.decode(body, max_decoded_bytes)


class DecodePool:
    """``workers`` processes decoding bodies of at least ``min_bytes``; start() before use, stop() after."""

    def __init__(self, workers: int, *, min_bytes: int = DEFAULT_MIN_BYTES) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.workers = workers
        self.min_bytes = min_bytes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._warming: concurrent.futures.ProcessPoolExecutor | None = None  # the pool being started
        self._ready: concurrent.futures.ProcessPoolExecutor | None = None  # the pool whose workers all run

    def start(self) -> None:
        """Accept bodies; processes (and multiprocessing's resource tracker) start with the first large one,
        so starting a node spawns nothing."""
        self._stopped = False

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                if self._stopped:
                    raise DecodeUnavailable("the node is stopping")
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                    initargs=(os.getpid(),))
            return self._pool

    def takes(self, body: bytes) -> bool:
        """Whether to hand ``body`` to a worker: large enough, and every worker has started (the first
        large body starts them)."""
        if len(body) < self.min_bytes:
            return False
        pool = self._pool
        if pool is not None and pool is self._ready:
            return True
        self._warm()
        return False

    def _warm(self) -> None:
        try:
            pool = self._executor()
        except DecodeUnavailable:
            return
        with self._lock:
            if self._warming is pool or self._ready is pool:
                return
            self._warming = pool
        try:
            started = [pool.submit(_started) for _ in range(self.workers)]  # one process each
        except RuntimeError:  # broken or shut down meanwhile: the next large body tries again
            with self._lock:
                self._warming = None
            return

        def done(_: concurrent.futures.Future[None]) -> None:
            if all(f.done() for f in started):
                with self._lock:
                    if self._warming is pool:
                        self._warming = None
                        if all(f.exception() is None for f in started):
                            self._ready = pool

        for future in started:
            future.add_done_callback(done)

    async def decode(self, body: bytes, max_decoded_bytes: int) -> IngestStats:
        """What ``body`` holds, decoded by a worker. Raises what :meth:`SeriesChecker.decode` raises, or
        :class:`DecodeUnavailable` when the worker died first."""
        pool = self._executor()
        try:
            return await asyncio.wrap_future(pool.submit(_decode_in_worker, body, max_decoded_bytes))
        except RuntimeError as exc:  # BrokenProcessPool, or submitted while the node stops
            if not isinstance(exc, BrokenProcessPool):
                raise DecodeUnavailable("the node is stopping; retry") from None
            with self._lock:
                if self._pool is pool:
                    self._pool = None  # the next request starts a new pool
            pool.shutdown(wait=False, cancel_futures=True)
            _log.error("an ingest worker died; starting new ones", err=str(exc))
            raise DecodeUnavailable("an ingest worker died while decoding the request; retry") from None

    async def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._stopped = True
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
