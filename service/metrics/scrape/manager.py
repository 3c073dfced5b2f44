"""ScrapeManager: every scrape config of one metrics instance, each run by a ScrapePool.

`append(body)` receives one snappy-compressed WriteRequest per scrape; the instance appends it durably to
its WAL as a type-1 record.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from service.metrics.config.scrape import ScrapeConfig
from service.metrics.scrape.hostfilter import HostFilter, hostname
from service.metrics.scrape.loop import Append
from service.metrics.scrape.pool import ScrapePool
from service.metrics.scrape.sharding import TargetShards
from service.relabel import RelabelConfig


def _sort_key(t: dict) -> tuple[str, str, str, str]:
    labels = t["labels"]
    return (t["instance"], t["target_group"], labels.get("job", ""), labels.get("instance", ""))


class ScrapeManager:
    def __init__(self, instance: str, scrape_configs: list[ScrapeConfig], append: Append, *,
                 host_filter: bool = False, host_filter_relabel_configs: Sequence[RelabelConfig] = (),
                 file_poll_interval: float = 1.0, shards: TargetShards | None = None) -> None:
        self.instance = instance
        self.append = append
        self.scrape_configs = list(scrape_configs)
        self.host_filter = HostFilter(host_filter_relabel_configs) if host_filter else None
        # A sharded config's nodes scrape each target at the same slots, whichever node it is on: that is
        # what lets a target change hands between two slots (sharding.py), so its seed has no host in it.
        seed_host = "" if shards is not None else hostname()
        self.offset_seed = zlib.crc32(f"{seed_host}/{instance}".encode()) * 0x9E3779B97F4A7C15 % (1 << 64)
        self.file_poll_interval = file_poll_interval
        self.shards = shards
        self.pools: dict[str, ScrapePool] = {}
        self.started = False

    def _pool(self, sc: ScrapeConfig) -> ScrapePool:
        return ScrapePool(self.instance, sc, self.append, host_filter=self.host_filter,
                          offset_seed=self.offset_seed, file_poll_interval=self.file_poll_interval,
                          shards=self.shards)

    def discover_ahead(self) -> None:
        """Build the pools and run their discovery, without scraping yet (a pre-warmed instance)."""
        for sc in self.scrape_configs:
            if sc.job_name not in self.pools:
                self.pools[sc.job_name] = self._pool(sc)
            self.pools[sc.job_name].discover_ahead()

    async def start(self) -> None:
        for sc in self.scrape_configs:
            pool = self.pools.get(sc.job_name)
            if pool is None:
                pool = self.pools[sc.job_name] = self._pool(sc)
            pool.start()
        self.started = True

    async def stop(self, write_stale: bool = False) -> None:
        pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            await pool.stop(write_stale)
        self.started = False

    async def apply(self, scrape_configs: list[ScrapeConfig],
                    host_filter_relabel_configs: Sequence[RelabelConfig] | None = None) -> None:
        """Update in place: removed jobs stop (with stale markers), changed jobs reload, new jobs start."""
        if host_filter_relabel_configs is not None and self.host_filter is not None:
            self.host_filter = HostFilter(host_filter_relabel_configs)
            for pool in self.pools.values():
                pool.host_filter = self.host_filter
                pool._changed.set()
        self.scrape_configs = list(scrape_configs)
        wanted = {sc.job_name: sc for sc in scrape_configs}
        for job in [j for j in self.pools if j not in wanted]:
            await self.pools.pop(job).stop(write_stale=True)
        for job, sc in wanted.items():
            pool = self.pools.get(job)
            if pool is None:
                pool = self._pool(sc)
                self.pools[job] = pool
                pool.start()
            elif pool.sc != sc:
                await pool.reload(sc)

    def target_split(self) -> dict[str, int]:
        """Per member, how many of this instance's targets it scrapes (sharding: targets only)."""
        out: dict[str, int] = {}
        for pool in self.pools.values():
            for member, count in pool.split().items():
                out[member] = out.get(member, 0) + count
        return out

    def targets(self) -> list[dict[str, object]]:
        out = [t for pool in self.pools.values() for t in pool.targets()]
        return sorted(out, key=_sort_key)
