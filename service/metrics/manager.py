"""The instance manager: runs the desired set of named instances, applying only the difference.

The node file (`metrics.configs`) and the cluster sharder both hand it a whole desired set. It hashes each
config's canonical form once, diffs against what runs and applies the difference in bulk (stop removed,
start added, restart changed), concurrently up to a bound: never one config at a time against all others,
which is what made Grafana Agent take minutes past 1k configs.

Stopping never holds up starting: a removed instance is *halted* (its scraping and receiving end) inside
`apply`, and its queues then *drain* the WAL in the background for up to `remote_flush_deadline`, however
many drains run at once. A config started again while its old instance drains cuts that drain short; the new
instance sends the rest from the same WAL. An instance that fails to start is kept as failed, with its
reason, and retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from service.instancediff import config_hash, diff
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
FAILED = Gauge("agent_metrics_instance_failed",
               "1 while an instance this node should run failed to start (it is retried with backoff).",
               ["instance_name"])
DRAINING = Gauge("agent_metrics_instances_draining",
                 "Stopped instances still sending their WAL (up to remote_flush_deadline).")
RETRY_FIRST = 1.0  # seconds before the first retry of a failed start; doubles up to RETRY_MAX
RETRY_MAX = 60.0
HALT_BATCH = 128  # instances whose on_halted is called together (one etcd transaction releases their claims)


class Instance(Protocol):
    name: str

    async def start(self) -> None: ...

    async def halt(self, *, quiet: bool = False) -> None:
        """Stop scraping and receiving; quick. The WAL stays open for drain()."""

    async def drain(self, flush_deadline: float | None = None, *, quiet: bool = False) -> None:
        """Send what the WAL holds for at most the deadline, then close it."""

    def cut_drain(self) -> None: ...

    async def prepare(self) -> None:
        """Optional: everything start() does short of scraping and receiving (a pre-warmed handoff)."""

    def targets(self) -> list[dict[str, Any]]: ...

    def forget_metrics(self, successor: object = None) -> None:
        """After drain: remove its self-metric series (all without a successor: the config was removed)."""


InstanceFactory = Callable[[InstanceConfig], Instance]
OnHalted = Callable[[list[str]], Awaitable[None]]


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


@dataclass
class _Prepared:
    """An instance made ready ahead (WAL open, queues and discovery running) for a config about to come here."""

    digest: str
    task: asyncio.Task[Instance] = field(init=False)
    began: bool = False  # past the concurrency bound: its WAL is being opened


@dataclass
class Failure:
    """A config that should run here but failed to start; retried at `retry_at` (monotonic)."""

    cfg: InstanceConfig
    digest: str
    reason: str
    attempts: int
    retry_at: float


def _forget_metrics(instance: Instance, successor: Instance | None = None) -> None:
    try:
        instance.forget_metrics(successor)
    except Exception as exc:  # stale series must never fail a start or a drain
        _log.error("removing an instance's self metrics failed", instance=instance.name, err=_reason(exc))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class InstanceManager:
    def __init__(self, factory: InstanceFactory, *, concurrency: int = 64, retry_first: float = RETRY_FIRST,
                 retry_max: float = RETRY_MAX) -> None:
        self._factory = factory
        self._running: dict[str, _Running] = {}
        self._draining: dict[str, tuple[Instance, asyncio.Task[None]]] = {}
        self._failed: dict[str, Failure] = {}
        self._replaced: dict[str, Instance] = {}  # restarted: the old instance, until its successor started
        self._prepared: dict[str, _Prepared] = {}
        self._prepare_limit = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        # closed while an apply halts instances: their WALs drain only once every halt is done, so thousands
        # of drains (queue flushes, WAL closes, metric removal) do not slow the halts others wait for
        self._drains_open = asyncio.Event()
        self._drains_open.set()
        self._concurrency = concurrency
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._retry_task: asyncio.Task[None] | None = None
        self.on_failures_changed: Callable[[], None] | None = None  # called when a retry changed the set

    def running(self) -> list[str]:
        return sorted(self._running)

    def draining(self) -> list[str]:
        return sorted(self._draining)

    def failures(self) -> dict[str, str]:
        """Configs that failed to start, with the reason (name → reason)."""
        return {name: f.reason for name, f in self._failed.items()}

    def failed_configs(self) -> dict[str, InstanceConfig]:
        return {name: f.cfg for name, f in self._failed.items()}

    def get(self, name: str) -> Instance | None:
        entry = self._running.get(name)
        return entry.instance if entry else None

    def digest(self, name: str) -> str | None:
        entry = self._running.get(name)
        return entry.digest if entry else None

    async def apply(self, desired: Mapping[str, InstanceConfig], digests: Mapping[str, str] | None = None,
                    on_halted: OnHalted | None = None) -> ApplyResult:
        """Make the running set equal `desired` (name → config).

        `digests` (name → config_hash) lets a caller that caches them skip re-hashing every config.
        `on_halted(names)` is awaited once the removed instances stopped scraping and receiving, before any
        start (the cluster releases their claims there). Returns before their WAL is drained."""
        async with self._lock:
            given = digests or {}
            digests = {name: given.get(name) or config_hash(cfg) for name, cfg in desired.items()}
            result = ApplyResult()
            for name in [n for n, f in self._failed.items() if n not in desired or f.digest != digests[n]]:
                self._clear_failure(name)  # removed, or changed: a changed config is tried at once
            change = diff({n: r.digest for n, r in self._running.items()}, digests, self._failed)
            to_stop, to_restart, to_start = change.stop, change.restart, change.start
            waiting = sum(1 for n in desired if n in self._failed)
            result.failed.update({n: self._failed[n].reason for n in desired if n in self._failed})
            result.unchanged = len(desired) - len(to_start) - len(to_restart) - waiting
            limit = asyncio.Semaphore(self._concurrency)

            stopping = set(to_stop)  # a set: `in` on the list made halting n instances cost n² compares

            async def halt(name: str) -> None:
                async with limit:
                    await self._halt(name, result, removed=name in stopping)

            async def halt_batch(batch: list[str]) -> None:
                # a batch's claims go as soon as its last scrape ended, not after every other halt
                await asyncio.gather(*(halt(n) for n in batch))
                ended = [n for n in batch if n in stopping]
                if on_halted is not None and ended:
                    await on_halted(ended)

            halts = to_stop + to_restart
            self._drains_open.clear()
            try:
                await asyncio.gather(*(halt_batch(halts[i:i + HALT_BATCH])
                                       for i in range(0, len(halts), HALT_BATCH)))
            finally:
                self._drains_open.set()

            async def start(name: str) -> bool:
                async with limit:
                    return await self._start(name, desired[name], digests[name], result)

            started = await asyncio.gather(*(start(n) for n in to_start + to_restart))
            restarting = set(to_restart)
            for name, ok in zip(to_start + to_restart, started, strict=True):
                if ok:
                    (result.restarted if name in restarting else result.started).append(name)
            result.stopped = [n for n in to_stop if n not in result.failed]
            CONFIG_CHANGES.labels("created").inc(len(result.started))
            CONFIG_CHANGES.labels("updated").inc(len(result.restarted))
            CONFIG_CHANGES.labels("deleted").inc(len(result.stopped))
            self._set_gauges()
            if to_start or to_stop or to_restart:
                _log.info("applied instance configs", started=len(result.started), stopped=len(result.stopped),
                          restarted=len(result.restarted), unchanged=result.unchanged, failed=len(result.failed),
                          draining=len(self._draining))
            self._schedule_retry()
            return result

    async def start_more(self, desired: Mapping[str, InstanceConfig], digests: Mapping[str, str]) -> ApplyResult:
        """Start these configs, which do not run here yet, and leave everything else as it is: a takeover
        between two full `apply` calls (the next one sees them running, unchanged)."""
        async with self._lock:
            result = ApplyResult()
            names = [n for n in desired if n not in self._running]
            limit = asyncio.Semaphore(self._concurrency)

            async def start(name: str) -> bool:
                async with limit:
                    return await self._start(name, desired[name], digests[name], result)

            oks = await asyncio.gather(*(start(n) for n in names))
            result.started = [n for n, ok in zip(names, oks, strict=True) if ok]
            result.unchanged = len(desired) - len(names)
            CONFIG_CHANGES.labels("created").inc(len(result.started))
            self._set_gauges()
            self._schedule_retry()
            return result

    # pre-warmed handoff ----------------------------------------------------------------------------------
    def prepared(self) -> list[str]:
        return sorted(self._prepared)

    def prepare(self, desired: Mapping[str, InstanceConfig], digests: Mapping[str, str]) -> int:
        """In the background, make these configs' instances ready short of scraping (another node still runs
        them): a later start then only begins scraping. Skips what runs, is prepared or still drains here
        (two instances must never hold one WAL). Returns how many were newly set going."""
        count = 0
        for name, cfg in desired.items():
            if name in self._running or name in self._prepared or name in self._draining:
                continue
            entry = _Prepared(digests[name])
            entry.task = asyncio.create_task(self._prepare_one(cfg, entry), name=f"instance-prepare[{name}]")
            self._prepared[name] = entry
            count += 1
        return count

    async def _prepare_one(self, cfg: InstanceConfig, entry: _Prepared) -> Instance:
        async with self._prepare_limit:
            entry.began = True
            instance = self._factory(cfg)
            prepare = getattr(instance, "prepare", None)
            if prepare is not None:
                await prepare()
            return instance

    async def _take_prepared(self, name: str, digest: str) -> Instance | None:
        """The instance prepared for `name` at this digest (None: none, or it failed, or the config changed)."""
        entry = self._prepared.pop(name, None)
        if entry is None:
            return None
        if entry.digest != digest or not entry.began:
            # changed, or still queued behind other preparations: starting it now beats waiting for them
            await self._discard(entry)
            return None
        try:
            return await entry.task
        except Exception as exc:  # started from scratch instead, which reports the failure
            _log.info("pre-warming an instance failed", instance=name, err=_reason(exc))
            return None

    async def _discard(self, entry: _Prepared) -> None:
        entry.task.cancel()
        results = await asyncio.gather(entry.task, return_exceptions=True)
        instance = results[0]
        if isinstance(instance, BaseException) or getattr(instance, "prepare", None) is None:
            return  # nothing was opened (an instance without prepare() is only built, never started)
        try:
            await instance.halt(quiet=True)  # it never scraped: no "halted" / "stopped" events
            await instance.drain(0.0, quiet=True)
        except Exception as exc:
            _log.error("closing a pre-warmed instance failed", instance=instance.name, err=_reason(exc))
        _forget_metrics(instance)  # its WAL and queue series; nothing of that name runs here (see prepare)

    async def wait_prepared(self) -> None:
        """Until every instance being prepared is ready (or failed)."""
        await asyncio.gather(*(e.task for e in list(self._prepared.values())), return_exceptions=True)

    async def drop_prepared(self, keep: set[str] | frozenset[str] = frozenset()) -> int:
        """Close the prepared instances not named in `keep` (their handoff is off); how many."""
        async with self._lock:
            gone = [self._prepared.pop(n) for n in [n for n in self._prepared if n not in keep]]
            await asyncio.gather(*(self._discard(e) for e in gone))
            return len(gone)

    async def _halt(self, name: str, result: ApplyResult, *, removed: bool) -> None:
        """Stop `name`'s scraping and receiving now; its WAL drains in the background. A `removed` instance's
        self metrics go once it drained; a restarted one's stay for its successor (see `_start`)."""
        entry = self._running.pop(name)
        try:
            await entry.instance.halt()
        except Exception as exc:  # one failing instance must not block the others
            ABNORMAL_EXITS.labels(name).inc()
            _log.error("instance failed to stop cleanly", instance=name, err=_reason(exc))
            result.failed[name] = f"stop: {_reason(exc)}"
        if not removed:
            self._replaced[name] = entry.instance
        task = asyncio.create_task(self._drain(name, entry.instance, removed), name=f"instance-drain[{name}]")
        self._draining[name] = (entry.instance, task)

    async def _drain(self, name: str, instance: Instance, removed: bool) -> None:
        try:
            await self._drains_open.wait()
            await instance.drain()
        except Exception as exc:
            ABNORMAL_EXITS.labels(name).inc()
            _log.error("instance failed to drain its WAL", instance=name, err=_reason(exc))
        finally:
            if removed:  # before a new instance of the name can start: `_start` waits for this task
                _forget_metrics(instance)
            if self._draining.get(name, (None,))[0] is instance:
                del self._draining[name]
            DRAINING.set(len(self._draining))

    async def _cut_drain(self, name: str) -> None:
        """`name` starts again: its old instance stops sending at once (the new one sends the rest)."""
        entry = self._draining.get(name)
        if entry is not None:
            entry[0].cut_drain()
            await asyncio.gather(entry[1], return_exceptions=True)

    async def _start(self, name: str, cfg: InstanceConfig, digest: str, result: ApplyResult) -> bool:
        await self._cut_drain(name)
        previous = self._replaced.pop(name, None)
        try:
            instance = await self._take_prepared(name, digest) or self._factory(cfg)
            await instance.start()
        except Exception as exc:
            result.failed[name] = f"start: {self._record_failure(name, cfg, digest, exc)}"
            if previous is not None:  # nothing runs the config now: its series would only mislead
                _forget_metrics(previous)
            return False
        if previous is not None:
            _forget_metrics(previous, instance)
        self._running[name] = _Running(instance, digest)
        self._clear_failure(name)
        return True

    def _record_failure(self, name: str, cfg: InstanceConfig, digest: str, exc: BaseException) -> str:
        ABNORMAL_EXITS.labels(name).inc()
        previous = self._failed.get(name)
        attempts = previous.attempts + 1 if previous is not None else 1
        delay = min(self._retry_first * 2 ** (attempts - 1), self._retry_max)
        reason = _reason(exc)
        self._failed[name] = Failure(cfg, digest, reason, attempts, time.monotonic() + delay)
        FAILED.labels(name).set(1)
        _log.error("instance failed to start; retrying", instance=name, err=reason, attempt=attempts,
                   retry_in_seconds=round(delay, 1))
        return reason

    def _clear_failure(self, name: str) -> None:
        if self._failed.pop(name, None) is not None:
            with contextlib.suppress(KeyError):
                FAILED.remove(name)

    def _set_gauges(self) -> None:
        ACTIVE_INSTANCES.set(len(self._running))
        ACTIVE_CONFIGS.set(len(self._running))
        DRAINING.set(len(self._draining))

    # retries ------------------------------------------------------------------------------------------
    def _schedule_retry(self) -> None:
        if self._failed and (self._retry_task is None or self._retry_task.done()):
            self._retry_task = asyncio.create_task(self._retry_loop(), name="instance-retry")

    async def _retry_loop(self) -> None:
        while self._failed:
            await asyncio.sleep(max(0.0, min(f.retry_at for f in self._failed.values()) - time.monotonic()))
            async with self._lock:
                now = time.monotonic()
                due = [(n, f) for n, f in self._failed.items() if f.retry_at <= now]
                result = ApplyResult()
                oks = await asyncio.gather(*(self._start(n, f.cfg, f.digest, result) for n, f in due))
                self._set_gauges()
            if any(oks):
                _log.info("failed instances started on retry", started=sum(oks), still_failed=len(self._failed))
                if self.on_failures_changed is not None:
                    self.on_failures_changed()

    # shutdown -----------------------------------------------------------------------------------------
    async def halt_all(self, on_halted: OnHalted | None = None) -> None:
        """Stop every instance's scraping and receiving; their WALs keep draining (see wait_drained)."""
        await self.apply({}, on_halted=on_halted)
        await self.drop_prepared()

    async def wait_drained(self) -> None:
        while self._draining:
            await asyncio.gather(*(task for _, task in list(self._draining.values())), return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop everything and wait until every WAL drained (each bounded by its remote_flush_deadline)."""
        await self.apply({})
        await self.drop_prepared()
        task, self._retry_task = self._retry_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.wait_drained()
