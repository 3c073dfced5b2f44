"""Node-level self metrics the operator's dashboards and alerts need and no subsystem owns.

- ``agent_event_loop_lag_seconds``: how late the event loop wakes a timer. It is the first thing to look at
  when a Python node is slow: heartbeats, scrapes and acknowledgements all wait behind a busy loop.
- ``agent_kv_store_up``: whether the last probe of the KV store (etcd or embedded) answered in time.
- ``agent_wal_filesystem_avail_bytes`` / ``agent_wal_filesystem_size_bytes``: the disk under
  ``metrics.wal_directory`` (WALs, search stores and the embedded KV live there), read at scrape time.
- ``agent_metrics_targets{state}``: this node's scrape targets by state (up, down, unknown), with
  ``agent_metrics_targets_last_scrape_seconds`` (the sum of their last scrape durations) and
  ``agent_metrics_targets_slowest_scrape_seconds`` (the longest), read at scrape time from the instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.tasks import cancel_and_wait

LOOP_LAG = Histogram("agent_event_loop_lag_seconds",
                     "How late the event loop ran a timer that was due, in seconds.",
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
KV_UP = Gauge("agent_kv_store_up", "1 if the last probe of the KV store answered within its timeout, else 0.")

TARGET_STATES = ("up", "down", "unknown")


class LoopLagMonitor:
    """Sleeps `interval` seconds at a time and records how much later than asked it woke up.

    Every `kv_every` wakes it also probes the KV store (when there is one), so a node cut off from etcd
    shows it in ``agent_kv_store_up`` without waiting for a request to fail (every 10 s, as before).

    One sample a second, not four: every wake costs an idle node a loop wakeup, and a stall still shows in
    full (the timer due during it runs as late as the stall is long); only stalls shorter than the gap
    between samples are seen less often.
    """

    def __init__(self, probe_kv: Callable[[], Awaitable[None]] | None = None, *, interval: float = 1.0,
                 kv_every: int = 10, kv_timeout: float = 2.0) -> None:
        self.probe_kv = probe_kv
        self.interval = interval
        self.kv_every = kv_every
        self.kv_timeout = kv_timeout
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._probe)
        self._task = self._probe = None

    async def _run(self) -> None:
        ticks = 0
        while True:
            due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            LOOP_LAG.observe(max(0.0, time.monotonic() - due))
            ticks += 1
            if self.probe_kv is not None and (ticks - 1) % self.kv_every == 0 and (self._probe is None
                                                                             or self._probe.done()):
                self._probe = asyncio.get_running_loop().create_task(self._probe_kv(), name="kv-probe")

    async def _probe_kv(self) -> None:
        assert self.probe_kv is not None
        try:
            async with asyncio.timeout(self.kv_timeout):
                await self.probe_kv()
        except asyncio.CancelledError:
            raise
        except Exception:  # any failure of the store counts as down; the reason is in the KV's own logs
            KV_UP.set(0)
        else:
            KV_UP.set(1)


class NodeCollector(Collector):
    """Values read at scrape time: the WAL filesystem and the targets by state."""

    def __init__(self, wal_directory: Callable[[], str], targets: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.wal_directory = wal_directory
        self.targets = targets

    def collect(self) -> Iterator[GaugeMetricFamily]:
        avail = GaugeMetricFamily("agent_wal_filesystem_avail_bytes",
                                  "Bytes available to the node on the filesystem of metrics.wal_directory.")
        size = GaugeMetricFamily("agent_wal_filesystem_size_bytes",
                                 "Size in bytes of the filesystem of metrics.wal_directory.")
        with contextlib.suppress(OSError):
            st = os.statvfs(_existing(self.wal_directory()))
            avail.add_metric([], st.f_bavail * st.f_frsize)
            size.add_metric([], st.f_blocks * st.f_frsize)
        yield avail
        yield size
        listed = list(self.targets())
        tally = Tally(str(t.get("state", "unknown")) for t in listed)
        targets = GaugeMetricFamily("agent_metrics_targets", "Scrape targets of this node by state.",
                                    labels=["state"])
        for state in TARGET_STATES:
            targets.add_metric([state], tally.get(state, 0))
        yield targets
        durations = [float(t.get("scrape_duration_ms") or 0) / 1000 for t in listed]
        yield GaugeMetricFamily("agent_metrics_targets_last_scrape_seconds",
                                "Sum over this node's targets of their last scrape's duration.",
                                value=sum(durations))
        yield GaugeMetricFamily("agent_metrics_targets_slowest_scrape_seconds",
                                "The longest last scrape among this node's targets.",
                                value=max(durations, default=0.0))


def _existing(path: str) -> str:
    """The nearest existing directory at or above `path` (the WAL directory may not exist yet)."""
    path = os.path.abspath(path or ".")
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


_registered: NodeCollector | None = None


def register_node_collector(collector: NodeCollector) -> None:
    """Register `collector`, replacing the one a previous node in this process registered (tests)."""
    global _registered
    if _registered is not None:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(_registered)
    REGISTRY.register(collector)
    _registered = collector
