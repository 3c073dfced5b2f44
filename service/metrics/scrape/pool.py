"""A scrape pool: one scrape config's targets (from discovery, relabeled, host-filtered) and their loops."""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge

from service.http.client import HTTPClient
from service.log import get_logger
from service.metrics.config.discovery import sd_entries
from service.metrics.config.scrape import ScrapeConfig, accept_header
from service.metrics.config.sdcheck import unsupported
from service.metrics.discovery.manager import DiscoveryManager
from service.metrics.scrape.cache import LabelLimits, ScrapeCache
from service.metrics.scrape.hostfilter import HostFilter
from service.metrics.scrape.loop import Append, ScrapeLoop
from service.metrics.scrape.parser import ACCEPT_HEADER
from service.metrics.scrape.target import Target, TargetError, populate_labels
from service.relabel import Relabeler
from service.tasks import cancel_and_wait

UNSUPPORTED_SD = Gauge("agent_metrics_unsupported_sd_configs",
                       "Discovery mechanisms in running scrape configs that this node does not run (their targets "
                       "are never discovered), by mechanism.", ["mechanism"])


class ScrapePool:
    def __init__(self, instance: str, sc: ScrapeConfig, append: Append, *, host_filter: HostFilter | None = None,
                 offset_seed: int = 0, file_poll_interval: float = 1.0) -> None:
        self.instance = instance
        self.append = append
        self.host_filter = host_filter
        self.offset_seed = offset_seed
        self.file_poll_interval = file_poll_interval
        self.loops: dict[bytes, ScrapeLoop] = {}
        self.retiring: dict[bytes, ScrapeLoop] = {}  # targets gone, their end-of-run staleness pending
        self.dropped: list[dict[str, str]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._configure(sc)
        self.log = get_logger("scrape", instance=instance, job=sc.job_name)

    def _configure(self, sc: ScrapeConfig) -> None:
        self.sc = sc
        # discovery this node does not run (accepted with metrics.accept_unsupported_sd): shown, never silent
        self.unsupported = unsupported(sd_entries(sc))
        for mechanism in self.unsupported:
            UNSUPPORTED_SD.labels(mechanism).inc()
        self.relabeler = Relabeler(sc.relabel_configs)
        self.client = HTTPClient(sc, timeout=float(sc.scrape_timeout or 10))
        self.discovery = DiscoveryManager(sc, self._changed.set, file_poll_interval=self.file_poll_interval)

    def start(self) -> None:
        self.discovery.start()
        self._changed.set()
        self._task = asyncio.get_running_loop().create_task(self._sync_loop(), name=f"scrape pool {self.sc.job_name}")

    async def _sync_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.sync()

    def discover(self) -> list[Target]:
        """Current targets, deduplicated; relabel-dropped targets go to `dropped`."""
        targets: dict[bytes, Target] = {}
        dropped = []
        for group in self.discovery.groups():
            for tlabels in group.targets:
                labels = {**group.labels, **tlabels}
                if self.host_filter is not None and not self.host_filter.keep(labels):
                    continue
                try:
                    target, pre = populate_labels(labels, self.sc, self.relabeler)
                except TargetError as exc:
                    self.log.error("creating target failed", err=str(exc))
                    continue
                if target is None:
                    dropped.append(pre)
                else:
                    targets.setdefault(target.key, target)
        self.dropped = dropped
        return list(targets.values())

    def _new_loop(self, target: Target) -> ScrapeLoop:
        sc = self.sc
        cache = ScrapeCache(target.labels, honor_labels=sc.honor_labels,
                            metric_relabel_configs=sc.metric_relabel_configs,
                            limits=LabelLimits(sc.label_limit, sc.label_name_length_limit,
                                               sc.label_value_length_limit))
        return ScrapeLoop(target, self.client, self.append, job=sc.job_name, instance=self.instance,
                          honor_labels=sc.honor_labels, honor_timestamps=sc.honor_timestamps,
                          sample_limit=sc.sample_limit, body_size_limit=sc.body_size_limit.bytes,
                          cache=cache, offset_seed=self.offset_seed,
                          accept=accept_header(sc.scrape_protocols) or ACCEPT_HEADER,
                          accept_encoding="gzip" if sc.enable_compression else "identity")

    async def sync(self) -> None:
        targets = self.discover()
        wanted = {t.key: t for t in targets}
        self.retiring = {k: loop for k, loop in self.retiring.items() if loop.retiring}
        for key in [k for k in self.loops if k not in wanted]:
            loop = self.loops.pop(key)
            await loop.retire()
            self.retiring[key] = loop
        for key, target in wanted.items():
            if key not in self.loops:
                loop = self._new_loop(target)
                old = self.retiring.pop(key, None)
                if old is not None:  # back before its stale markers: the new loop takes over its series
                    await old.stop(write_stale=False)
                    loop._prev, loop.scrapes = old._prev, old.scrapes
                self.loops[key] = loop
                loop.start()
        limit = self.sc.target_limit
        forced = (f"target_limit exceeded (number of targets: {len(wanted)}, limit: {limit})"
                  if limit and len(wanted) > limit else None)
        for loop in self.loops.values():
            loop.forced_error = forced

    async def _stop_retiring(self, write_stale: bool) -> None:
        retiring, self.retiring = list(self.retiring.values()), {}
        await asyncio.gather(*(loop.stop(write_stale) for loop in retiring))

    async def reload(self, sc: ScrapeConfig) -> None:
        """New settings: loops restart with them, keeping each target's stale tracking."""
        await self._stop_task()
        await self.discovery.stop()
        await self._stop_retiring(write_stale=True)
        old = self.loops
        self.loops = {}
        for loop in old.values():
            await loop.stop(write_stale=False)
        await self.client.close()
        self._uncount_unsupported()
        self._configure(sc)
        self.discovery.start()
        await self.sync()
        for key, loop in self.loops.items():
            if key in old:
                loop._prev = old[key]._prev
                loop.scrapes = old[key].scrapes
        self._task = asyncio.get_running_loop().create_task(self._sync_loop(), name=f"scrape pool {sc.job_name}")

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def stop(self, write_stale: bool) -> None:
        await self._stop_task()
        await self.discovery.stop()
        await self._stop_retiring(write_stale)
        loops, self.loops = list(self.loops.values()), {}
        await asyncio.gather(*(loop.stop(write_stale) for loop in loops))
        await self.client.close()
        self._uncount_unsupported()

    def _uncount_unsupported(self) -> None:
        for mechanism in self.unsupported:
            UNSUPPORTED_SD.labels(mechanism).dec()
        self.unsupported = []

    def targets(self) -> list[dict[str, object]]:
        return [loop.state() for loop in self.loops.values()] + [
            {"instance": self.instance, "target_group": self.sc.job_name, "endpoint": "", "state": "down",
             "discovered_labels": {}, "labels": {"job": self.sc.job_name},
             "last_scrape": "0001-01-01T00:00:00Z", "scrape_duration_ms": 0,
             "scrape_error": f"{mechanism}_sd_configs: this node does not run {mechanism} service discovery; "
                             "no targets are discovered from it"}
            for mechanism in self.unsupported]
