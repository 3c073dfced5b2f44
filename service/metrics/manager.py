"""The instance manager: runs the desired set of named instances, applying only the difference.

The node file (`metrics.configs`) and the cluster sharder both hand it a whole desired set. It hashes each
config's canonical form once, diffs against what runs and applies the difference in bulk (stop removed,
start added, restart changed), concurrently up to a bound: never one config at a time against all others,
which is what made Grafana Agent take minutes past 1k configs.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from prometheus_client import Counter, Gauge

from service.config.schema import encode
from service.log import get_logger
from service.metrics.config import InstanceConfig

_log = get_logger("metrics.manager")

ACTIVE_INSTANCES = Gauge("agent_metrics_active_instances",
                         "Current number of active instances being used by the agent.")
ACTIVE_CONFIGS = Gauge("agent_metrics_active_configs", "Current number of active configs being used by the agent.")
CONFIG_CHANGES = Counter("agent_metrics_configs_changed_total", "Total number of dynamically updated configs",
                         ["event"])
ABNORMAL_EXITS = Counter("agent_metrics_instance_abnormal_exits_total",
                         "Total number of times an instance failed to start or stop.", ["instance_name"])


class Instance(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def targets(self) -> list[dict[str, Any]]: ...


InstanceFactory = Callable[[InstanceConfig], Instance]


def config_hash(cfg: InstanceConfig) -> str:
    """Hash of the canonical YAML (secrets included, so a changed password restarts the instance)."""
    # libyaml's emitter when present (same text as safe_dump): 30x faster on a 4 MiB config
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(encode(cfg, show_secrets=True), Dumper=dumper, sort_keys=False, allow_unicode=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ApplyResult:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class _Running:
    instance: Instance
    digest: str


class InstanceManager:
    def __init__(self, factory: InstanceFactory, *, concurrency: int = 64) -> None:
        self._factory = factory
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()
        self._concurrency = concurrency

    def running(self) -> list[str]:
        return sorted(self._running)

    def get(self, name: str) -> Instance | None:
        entry = self._running.get(name)
        return entry.instance if entry else None

    def digest(self, name: str) -> str | None:
        entry = self._running.get(name)
        return entry.digest if entry else None

    async def apply(self, desired: Mapping[str, InstanceConfig],
                    digests: Mapping[str, str] | None = None) -> ApplyResult:
        """Make the running set equal `desired` (name → config).

        `digests` (name → config_hash) lets a caller that caches them skip re-hashing every config."""
        async with self._lock:
            given = digests or {}
            digests = {name: given.get(name) or config_hash(cfg) for name, cfg in desired.items()}
            result = ApplyResult()
            to_stop = [n for n in self._running if n not in desired]
            to_restart = [n for n in self._running if n in desired and self._running[n].digest != digests[n]]
            to_start = [n for n in desired if n not in self._running]
            result.unchanged = len(desired) - len(to_start) - len(to_restart)
            limit = asyncio.Semaphore(self._concurrency)

            async def stop(name: str) -> None:
                async with limit:
                    entry = self._running.pop(name)
                    try:
                        await entry.instance.stop()
                    except Exception as exc:  # one failing instance must not block the others
                        ABNORMAL_EXITS.labels(name).inc()
                        _log.exception("instance failed to stop cleanly", instance=name)
                        result.failed[name] = f"stop: {exc}"

            async def start(name: str) -> bool:
                async with limit:
                    try:
                        instance = self._factory(desired[name])
                        await instance.start()
                    except Exception as exc:
                        ABNORMAL_EXITS.labels(name).inc()
                        _log.exception("instance failed to start", instance=name)
                        result.failed[name] = f"start: {exc}"
                        return False
                    self._running[name] = _Running(instance, digests[name])
                    return True

            await asyncio.gather(*(stop(n) for n in to_stop + to_restart))
            started = await asyncio.gather(*(start(n) for n in to_start + to_restart))
            for name, ok in zip(to_start + to_restart, started, strict=True):
                if ok:
                    (result.restarted if name in to_restart else result.started).append(name)
            result.stopped = [n for n in to_stop if n not in result.failed]
            CONFIG_CHANGES.labels("created").inc(len(result.started))
            CONFIG_CHANGES.labels("updated").inc(len(result.restarted))
            CONFIG_CHANGES.labels("deleted").inc(len(result.stopped))
            ACTIVE_INSTANCES.set(len(self._running))
            ACTIVE_CONFIGS.set(len(self._running))
            if to_start or to_stop or to_restart:
                _log.info("applied instance configs", started=len(result.started), stopped=len(result.stopped),
                          restarted=len(result.restarted), unchanged=result.unchanged, failed=len(result.failed))
            return result

    async def stop_all(self) -> None:
        await self.apply({})
