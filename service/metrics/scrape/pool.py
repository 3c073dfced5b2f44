"""A scrape pool: one scrape config's targets (from discovery, relabeled, host-filtered) and their loops."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import Gauge

from service.http.client import HTTPClient
from service.log import get_logger
from service.metrics.config.discovery import sd_entries
from service.metrics.config.scrape import ScrapeConfig, accept_header
from service.metrics.config.sdcheck import unsupported
from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.manager import DiscoveryManager
from service.metrics.scrape.cache import LabelLimits, ScrapeCache
from service.metrics.scrape.hostfilter import HostFilter
from service.metrics.scrape.loop import Append, ScrapeLoop
from service.metrics.scrape.parser import ACCEPT_HEADER
from service.metrics.scrape.sharding import ShardView, TargetShards
from service.metrics.scrape.target import Target, TargetError, populate_labels
from service.relabel import RelabelConfig, Relabeler, compile_rule
from service.tasks import cancel_and_wait

DROPPED_KEPT = 100
_LITERAL = re.compile(r"[A-Za-z0-9_/:-]+")  # a regex that only matches itself
_DEFAULT_LABELS = frozenset({"job", "__scrape_interval__", "__scrape_timeout__", "__metrics_path__", "__scheme__"})


class _Labels:
    """What a compiled relabel step reads (`.labels`), without copying the label set."""

    __slots__ = ("labels",)

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels


class FirstRuleFilter:
    """The first relabel rule alone, when it is a keep/drop that reads only discovered labels: it can then
    drop a target before its defaults are added and its labels sorted, and when none of the labels it reads
    is target-specific, once for a whole group. With thousands of discovered pods and a config that keeps a
    few, that is most of the work a resync does."""

    def __init__(self, rule: RelabelConfig) -> None:
        self.step = compile_rule(rule)
        self.sources = frozenset(rule.source_labels)
        # keep on one label and a plain value: (label, value), answered from a provider's index when it has one
        self.literal: tuple[str, str] | None = None
        if rule.action == "keep" and len(rule.source_labels) == 1 and _LITERAL.fullmatch(rule.regex):
            self.literal = (rule.source_labels[0], rule.regex)

    def keep(self, labels: dict[str, str]) -> bool:
        return bool(self.step(_Labels(labels)))  # type: ignore[arg-type]

    @classmethod
    def of(cls, sc: ScrapeConfig) -> FirstRuleFilter | None:
        rules = sc.relabel_configs
        if not rules or rules[0] is None or rules[0].action not in ("keep", "drop"):
            return None
        if any(n in _DEFAULT_LABELS or n.startswith("__param_") for n in rules[0].source_labels):
            return None
        return cls(rules[0])


UNSUPPORTED_SD = Gauge("agent_metrics_unsupported_sd_configs",
                       "Discovery mechanisms in running scrape configs that this node does not run (their targets "
                       "are never discovered), by mechanism.", ["mechanism"])


async def _stop_loops(loops: list[ScrapeLoop], write_stale: bool) -> None:
    """Stop loops side by side. None or one (a pool's usual share when thousands of instances halt at once)
    without gather's task per loop and its extra turn of the event loop."""
    if len(loops) == 1:
        await loops[0].stop(write_stale)
    elif loops:
        await asyncio.gather(*(loop.stop(write_stale) for loop in loops))


class ScrapePool:
    def __init__(self, instance: str, sc: ScrapeConfig, append: Append, *, host_filter: HostFilter | None = None,
                 offset_seed: int = 0, file_poll_interval: float = 1.0, shards: TargetShards | None = None) -> None:
        self.instance = instance
        self.append = append
        self.host_filter = host_filter
        self.offset_seed = offset_seed
        self.file_poll_interval = file_poll_interval
        self.loops: dict[bytes, ScrapeLoop] = {}
        self.retiring: dict[bytes, ScrapeLoop] = {}  # targets gone, their end-of-run staleness pending
        # sharding: targets (sharding.py): this node scrapes only its share; moved ones are handed off
        self.shards = shards
        self.moving: dict[bytes, ScrapeLoop] = {}  # targets moved to another node, until their cutover
        self.discovered_keys: list[bytes] = []  # every target this config has, on whichever node
        self._synced_view: ShardView | None = None
        # The first DROPPED_KEPT targets relabeling dropped (not those the first keep/drop rule dropped early):
        # keeping thousands per pool would cost GBs on a node with many configs over one cluster.
        self.dropped: list[dict[str, str]] = []
        self._group_cache: dict[int, tuple[TargetGroup, list[Target], list[dict[str, str]]]] = {}
        self._empty_groups: dict[int, TargetGroup] = {}
        self._cache_filter: HostFilter | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._discovering = False
        self._configure(sc)
        self.log = get_logger("scrape", instance=instance, job=sc.job_name)

    def _configure(self, sc: ScrapeConfig) -> None:
        self.sc = sc
        self._group_cache, self._empty_groups = {}, {}


        # discovery this node does not run (accepted with metrics.accept_unsupported_sd): shown, never silent
        self.unsupported = unsupported(sd_entries(sc))
        for mechanism in self.unsupported:
            UNSUPPORTED_SD.labels(mechanism).inc()
        self.relabeler = Relabeler(sc.relabel_configs)
        self.prefilter = FirstRuleFilter.of(sc)
        self.client = HTTPClient(sc, timeout=float(sc.scrape_timeout or 10))
        self.discovery = DiscoveryManager(sc, self._changed.set, file_poll_interval=self.file_poll_interval,
                                          host=self.host_filter.host if self.host_filter is not None else None)

    def discover_ahead(self) -> None:
        """Run discovery without scraping (a pre-warmed instance): its targets are known by the first scrape."""
        if not self._discovering:
            self._discovering = True
            self.discovery.start()

    def start(self) -> None:
        if self.shards is not None:
            self.shards.subscribe(self._changed.set, self)
        self.discover_ahead()
        self._changed.set()
        self._task = asyncio.get_running_loop().create_task(self._sync_loop(), name=f"scrape pool {self.sc.job_name}")

    async def _sync_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.sync()

    def discover(self) -> list[Target]:
        """Current targets, deduplicated; the first relabel-dropped ones go to `dropped`.

        A group object the discovery manager still holds (same identity) was not rebuilt, so its targets
        are taken from the previous pass: one changed pod among thousands relabels one group, not all.
        Groups that gave nothing are remembered by identity alone: a node with a thousand configs over one
        cluster holds millions of them.
        """
        if self._cache_filter is not self.host_filter:
            self._group_cache, self._empty_groups = {}, {}
            self._cache_filter = self.host_filter
        cache: dict[int, tuple[TargetGroup, list[Target], list[dict[str, str]]]] = {}
        empty: dict[int, TargetGroup] = {}
        targets: dict[bytes, Target] = {}
        dropped: list[dict[str, str]] = []
        for group in self._candidate_groups():
            key = id(group)
            if self._empty_groups.get(key) is group:
                empty[key] = group
                continue
            entry = self._group_cache.get(key)
            if entry is None or entry[0] is not group:
                kept, dropped_here = self._relabel_group(group)
                if not kept and not dropped_here:
                    empty[key] = group
                    continue
                entry = (group, kept, dropped_here)
            cache[key] = entry
            for target in entry[1]:
                targets.setdefault(target.key, target)
            if len(dropped) < DROPPED_KEPT:
                dropped.extend(entry[2][:DROPPED_KEPT - len(dropped)])
        self._group_cache, self._empty_groups = cache, empty
        self.dropped = dropped
        return list(targets.values())

    def _candidate_groups(self) -> list[TargetGroup]:
        """Every discovered group, or, when the first rule keeps one label value and a provider indexes its
        groups, only the groups that can pass it (the others would all be dropped by that rule)."""
        literal = self.prefilter.literal if self.prefilter is not None else None
        if literal is None:
            return self.discovery.groups()
        out: list[TargetGroup] = []
        for provider in self.discovery.providers:
            lookup = getattr(provider, "groups_with_label", None)
            out.extend(lookup(*literal) if lookup is not None else provider.sorted_groups())
        return out

    def _relabel_group(self, group: TargetGroup) -> tuple[list[Target], list[dict[str, str]]]:
        kept: list[Target] = []
        dropped: list[dict[str, str]] = []
        prefilter = self.prefilter
        if prefilter is not None and not any(n in t for t in group.targets for n in prefilter.sources):
            # The rule reads only group-level labels: one check decides for every target of the group.
            if not prefilter.keep(group.labels):
                return kept, dropped
            prefilter = None
        for tlabels in group.targets:
            labels = {**group.labels, **tlabels}
            if self.host_filter is not None and not self.host_filter.keep(labels):
                continue
            if prefilter is not None and not prefilter.keep(labels):
                continue  # dropped by the first rule: no need to build its full label set
            try:
                target, pre = populate_labels(labels, self.sc, self.relabeler)
            except TargetError as exc:
                self.log.error("creating target failed", err=str(exc))
                continue
            if target is None:
                if len(dropped) < DROPPED_KEPT:
                    dropped.append(pre)
            else:
                kept.append(target)
        return kept, dropped

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

    # sharding ---------------------------------------------------------------------------------------
    def handing_off(self) -> int:
        self.moving = {k: loop for k, loop in self.moving.items() if loop.handing_off}
        return len(self.moving)

    def synced_to(self) -> ShardView | None:
        return self._synced_view

    def split(self) -> dict[str, int]:
        """How many of this config's targets each member scrapes (every node discovers them all)."""
        if self.shards is None:
            return {}
        return self.shards.split(self.discovered_keys)

    def _share(self, discovered: dict[bytes, Target]) -> dict[bytes, Target]:
        """This node's share of the discovered targets; the loops of targets that moved away are handed off
        (they scrape until the cutover, then end without stale markers)."""
        shards = self.shards
        if shards is None:
            return discovered
        self.discovered_keys = list(discovered)
        self._synced_view = shards.view
        wanted = {k: t for k, t in discovered.items() if shards.owns(k)}
        for key in [k for k in self.loops if k in discovered and k not in wanted]:
            loop = self.loops.pop(key)
            loop.hand_off(shards.cutover)
            self.moving[key] = loop
        self.handing_off()
        return wanted

    async def sync(self) -> None:
        targets = self.discover()
        wanted = self._share({t.key: t for t in targets})
        self.retiring = {k: loop for k, loop in self.retiring.items() if loop.retiring}
        for key in [k for k in self.loops if k not in wanted]:
            loop = self.loops.pop(key)
            await loop.retire()
            self.retiring[key] = loop
        for key, target in wanted.items():
            if key not in self.loops:
                loop = self._new_loop(target)
                if self.shards is not None:
                    # a target that moved here: its previous owner scrapes the slots before the cutover
                    loop.not_before = self.shards.cutover
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
        await _stop_loops(retiring, write_stale)

    async def reload(self, sc: ScrapeConfig) -> None:
        """New settings: loops restart with them, keeping each target's stale tracking."""
        await self._stop_task()
        await self.discovery.stop()
        await self._stop_retiring(write_stale=True)
        moving, self.moving = list(self.moving.values()), {}  # their client closes below: end them now
        await asyncio.gather(*(loop.stop(write_stale=False) for loop in moving))
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
        if self.shards is not None:
            self.shards.unsubscribe(self)
        await self._stop_task()
        await self.discovery.stop()
        await self._stop_retiring(write_stale)
        moving, self.moving = list(self.moving.values()), {}
        await _stop_loops(moving, write_stale=False)
        loops, self.loops = list(self.loops.values()), {}
        await _stop_loops(loops, write_stale)
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
