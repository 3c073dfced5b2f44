"""A metrics instance: one named config's WAL, its remote_write queues and the WAL retention loop.

Instances know nothing about rings or KV stores; the manager starts and stops them. Data arrives through
:meth:`MetricsInstance.append` (the remote write receiver and the instance's own scrape loops) and leaves
through one queue per remote_write entry, each tailing the WAL from its own progress marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from typing import Any

from prometheus_client import Counter

from service.log import get_logger
from service.metricnames import remove_series
from service.metrics import records
from service.metrics.config import GlobalConfig, InstanceConfig
from service.metrics.remote import metrics as remote_metrics
from service.metrics.remote.queue import RemoteWriteQueue
from service.metrics.scrape.manager import ScrapeManager
from service.metrics.scrape.sharding import TargetShards
from service.tasks import cancel_and_wait
from service.wal import WAL, Position, WALError, wal_dir_for
from service.wal import metrics as wal_metrics

# Group-commit pacing of the instance WAL (least seconds between fsyncs under load; a lone record is synced
# at once). bench/write_ingest.py measured 0, 1 and 5 ms within noise of each other at 2000-sample
# requests (0.8-1.0 M samples/s, p99 54-107 ms at 16 connections on 2 shared cores, after the view-based
# decode); 1 ms keeps latency low for small requests.
# ``AGENT_WAL_SYNC_INTERVAL`` (seconds) overrides it, for benchmarks.
DEFAULT_SYNC_INTERVAL = 0.001
# How long a scrape's fsync may wait for others to share it. Nobody waits on a scrape's durability but its
# own loop, so a WAL takes one fsync per 100 ms instead of one per scrape: on a node scraping 100 targets a
# second, fsyncs and their thread and event-loop wakeups were about 30% of its CPU (bench/target_sharding.py,
# py-spy). A crash loses at most this much more of the scraped samples; a write to the receiver (someone
# waits on its answer) still brings the fsync forward for every record pending.
SCRAPE_LINGER = 0.1

SAMPLES_APPENDED = Counter("agent_wal_samples_appended_total", "Total number of samples appended to the WAL.",
                           ["instance_name"])
EXEMPLARS_APPENDED = Counter("agent_wal_exemplars_appended_total",
                             "Total number of exemplars appended to the WAL.", ["instance_name"])


class InstanceStopped(WALError):
    """The instance is not accepting writes (stopping, or not started)."""


def _sync_interval() -> float:
    text = os.environ.get("AGENT_WAL_SYNC_INTERVAL", "")
    try:
        return float(text) if text else DEFAULT_SYNC_INTERVAL
    except ValueError:
        return DEFAULT_SYNC_INTERVAL


@functools.lru_cache(maxsize=8)
def _absolute(root: str) -> str:
    """The WAL root made absolute once: os.getcwd was a measurable part of every instance start."""
    return os.path.abspath(root)


class MetricsInstance:
    def __init__(self, cfg: InstanceConfig, global_cfg: GlobalConfig, wal_root: str, *,
                 sync_interval: float | None = None, shards: TargetShards | None = None) -> None:
        """``cfg`` must already have the global defaults applied (``apply_defaults``). ``shards``: this
        node's share of target-sharded configs' targets (used when ``cfg.sharding`` is ``targets``)."""
        self.name = cfg.name
        self.shards = shards if cfg.target_sharded else None
        self.cfg = cfg
        self.global_cfg = global_cfg
        self.wal_dir = wal_dir_for(_absolute(wal_root), cfg.name)
        self.sync_interval = _sync_interval() if sync_interval is None else sync_interval
        self.log = get_logger("metrics.instance", instance=cfg.name)
        self.wal: WAL | None = None
        self.queues: list[RemoteWriteQueue] = []
        self.endpoints: set[tuple[str, str, str]] = set()  # the label sets of its queues' self metrics
        self.scrape: ScrapeManager | None = None
        self._accepting = False
        self._retention: asyncio.Task[None] | None = None
        self._draining: list[RemoteWriteQueue] = []
        self._cut = False
        self._samples = SAMPLES_APPENDED.labels(cfg.name)
        self._exemplars = EXEMPLARS_APPENDED.labels(cfg.name)

    async def prepare(self) -> None:
        """Open the WAL, start the queues and run discovery, but neither scrape nor receive: a pre-warmed
        handoff does this while another node still holds the config's claim, so :meth:`start` only has to
        begin scraping. On any failure close what was opened."""
        if self.wal is not None:
            return
        self.wal = await WAL.aopen(self.wal_dir, sync_interval=self.sync_interval, instance=self.name)
        try:
            await self._start_queues()
            self.scrape = ScrapeManager(self.name, list(self.cfg.scrape_configs), self._append_scrape,
                                        host_filter=self.cfg.host_filter,
                                        host_filter_relabel_configs=self.cfg.host_filter_relabel_configs,
                                        shards=self.shards)
            self.scrape.discover_ahead()
        except BaseException:
            await self.halt(quiet=True)
            await self.drain(0.0, quiet=True)
            raise

    async def start(self) -> None:
        """Prepare (unless done ahead), then accept writes and start the scrape loops."""
        await self.prepare()
        try:
            assert self.scrape is not None
            self._accepting = True
            self._retention = asyncio.create_task(self._retention_loop(), name=f"wal-retention[{self.name}]")
            await self.scrape.start()
        except BaseException:
            await self.halt(quiet=True)
            await self.drain(0.0, quiet=True)
            raise
        self.log.info("instance started", wal=self.wal_dir, remote_writes=len(self.queues),
                      scrape_configs=len(self.cfg.scrape_configs))

    async def _start_queues(self) -> None:
        assert self.wal is not None
        for rw in self.cfg.remote_write:
            queue = RemoteWriteQueue(self.wal, rw, instance=self.name,
                                     external_labels=dict(self.global_cfg.external_labels),
                                     flush_deadline=float(self.cfg.remote_flush_deadline))
            await queue.start()
            self.queues.append(queue)
            self.endpoints.add(queue.labels)

    async def append(self, body: bytes, *, samples: int = 0, exemplars: int = 0, linger: float = 0.0) -> Position:
        """Durably append a validated, snappy-compressed WriteRequest; returns once an fsync covers it (which
        may wait up to `linger` seconds for other records to share it).

        Raises InstanceStopped when not accepting writes, WALError when the WAL could not make it durable.
        """
        wal = self.wal
        if not self._accepting or wal is None:
            raise InstanceStopped(f"instance {self.name} is not running")
        pos = await wal.append_durable(records.WRITE_REQUEST, body, linger=linger)
        if samples:
            self._samples.inc(samples)
        if exemplars:
            self._exemplars.inc(exemplars)
        return pos

    async def _append_scrape(self, body: bytes) -> None:
        """One scrape's snappy WriteRequest; a stopped instance drops it (its loops are being stopped)."""
        with contextlib.suppress(InstanceStopped):
            await self.append(body, linger=SCRAPE_LINGER)

    def targets(self) -> list[dict[str, Any]]:
        return self.scrape.targets() if self.scrape is not None else []

    def target_split(self) -> dict[str, int]:
        return self.scrape.target_split() if self.scrape is not None else {}

    def consumer_positions(self) -> list[Position | None]:
        """What each remote_write queue's progress marker holds (None: it has read nothing yet)."""
        return [queue.stored_position for queue in self.queues]

    async def truncate_once(self) -> None:
        wal = self.wal
        if wal is None:
            return

        def run() -> Any:
            return wal.truncate(min_keep_time_ms=int(self.cfg.min_wal_time * 1000),
                                max_age_ms=int(self.cfg.max_wal_time * 1000),
                                consumers=self.consumer_positions())

        result = await asyncio.to_thread(run)
        if result.segments_deleted:
            self.log.info("WAL truncated", segments=len(result.segments_deleted), bytes=result.bytes_deleted)

    async def _retention_loop(self) -> None:
        interval = float(self.cfg.wal_truncate_frequency)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.truncate_once()
            except OSError:
                self.log.exception("WAL truncation failed")

    async def _stop_queues(self, deadline: float) -> None:
        queues, self.queues = self.queues, []
        self._draining = queues
        try:
            results = await asyncio.gather(*(q.stop(flush_deadline=deadline) for q in queues),
                                           return_exceptions=True)
        finally:
            self._draining = []
        for result in results:
            if isinstance(result, Exception):  # one endpoint failing to stop must not keep the WAL open
                self.log.error("remote_write queue failed to stop", err=str(result))

    async def halt(self, *, quiet: bool = False) -> None:
        """Stop scraping and receiving: nothing new reaches the WAL after this returns, so another node may
        start the config. The WAL and the remote_write queues stay open for :meth:`drain`."""
        if self.scrape is not None:
            # Stale markers (write_stale_on_shutdown) are appended while the WAL still accepts writes.
            try:
                await self.scrape.stop(write_stale=self.cfg.write_stale_on_shutdown)
            finally:
                self.scrape = None
        self._accepting = False
        await cancel_and_wait(self._retention)
        self._retention = None
        if self.wal is not None:
            # A scrape cancelled while its record lingered for the shared fsync left that record pending:
            # make it durable now, so the drain (which sends what is durable) sends it too.
            with contextlib.suppress(WALError):
                await self.wal.sync_barrier()
        if not quiet:
            self.log.info("instance halted")

    async def drain(self, flush_deadline: float | None = None, *, quiet: bool = False) -> None:
        """After :meth:`halt`: send what the WAL holds for at most ``flush_deadline`` seconds (default
        ``remote_flush_deadline``), store each queue's marker and close the WAL. What is left unsent stays in
        the WAL for the next instance of this config. :meth:`cut_drain` ends it early."""
        deadline = float(self.cfg.remote_flush_deadline) if flush_deadline is None else flush_deadline
        if self._cut:
            deadline = 0.0
        await self._stop_queues(deadline)
        wal, self.wal = self.wal, None
        if wal is not None:
            await wal.aclose()
        if not quiet:
            self.log.info("instance stopped")

    def cut_drain(self) -> None:
        """End a running (or coming) :meth:`drain` now: each queue stores the marker of what was acknowledged
        and stops."""
        self._cut = True
        for queue in self._draining:
            queue.cut_flush()

    async def stop(self) -> None:
        await self.halt()
        await self.drain()

    def forget_metrics(self, successor: object = None) -> None:
        """After :meth:`drain`: remove the self-metric series that died with this instance. Without a
        ``successor`` the config was removed, so all of them; with one (the same config restarted), only the
        remote_write endpoints the successor no longer has."""
        kept = successor.endpoints if isinstance(successor, MetricsInstance) else set()
        for labels in self.endpoints - kept:
            remote_metrics.forget(*labels)
        if successor is None:
            wal_metrics.forget(self.name)
            remove_series((SAMPLES_APPENDED, EXEMPLARS_APPENDED), self.name)
