"""The instance manager applies only the difference between the desired and the running set."""

from __future__ import annotations

import asyncio
import time

from service.metrics.config import InstanceConfig
from service.metrics.manager import FAILED, InstanceManager


class RecordingInstance:
    """A minimal instance that records its lifecycle (the manager is the unit under test)."""

    events: list[tuple[str, str]] = []
    forgotten: list[tuple[str, bool]] = []  # (name, whether a successor kept some series)
    broken: set[str] = set()

    def __init__(self, cfg: InstanceConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.cut = asyncio.Event()

    async def start(self) -> None:
        if self.name.startswith("broken") or self.name in self.broken:
            raise RuntimeError("cannot start")
        self.events.append(("start", self.name))

    async def halt(self) -> None:
        self.events.append(("stop", self.name))

    async def drain(self, flush_deadline: float | None = None) -> None:
        self.events.append(("drained", self.name))

    def cut_drain(self) -> None:
        self.cut.set()

    def targets(self) -> list[dict[str, object]]:
        return []

    def forget_metrics(self, successor: object = None) -> None:
        self.forgotten.append((self.name, successor is not None))


class StuckRemoteInstance(RecordingInstance):
    """Drains as an instance whose remote_write endpoint never answers: until cut, or 60 s."""

    async def drain(self, flush_deadline: float | None = None) -> None:
        try:
            async with asyncio.timeout(60):
                await self.cut.wait()
            self.events.append(("cut", self.name))
        except TimeoutError:
            self.events.append(("gave up", self.name))


def cfgs(*names: str, **overrides: bool) -> dict[str, InstanceConfig]:
    return {n: InstanceConfig(name=n, write_stale_on_shutdown=overrides.get(n, False)) for n in names}


def test_apply_diffs_and_restarts_only_changed() -> None:
    async def scenario() -> None:
        RecordingInstance.events = []
        manager = InstanceManager(RecordingInstance)
        first = await manager.apply(cfgs("a", "b", "c"))
        assert sorted(first.started) == ["a", "b", "c"] and manager.running() == ["a", "b", "c"]
        RecordingInstance.events.clear()

        second = await manager.apply(cfgs("a", "b", "d", b=True))
        assert second.started == ["d"]
        assert second.stopped == ["c"]
        assert second.restarted == ["b"]
        assert second.unchanged == 1
        await manager.wait_drained()
        assert sorted(RecordingInstance.events) == sorted([("stop", "c"), ("stop", "b"), ("start", "b"),
                                                           ("start", "d"), ("drained", "c"), ("drained", "b")])
        RecordingInstance.events.clear()
        third = await manager.apply(cfgs("a", "b", "d", b=True))
        assert (third.started, third.stopped, third.restarted, third.unchanged) == ([], [], [], 3)
        assert RecordingInstance.events == []
        await manager.stop_all()
        assert manager.running() == []

    asyncio.run(scenario())


def test_self_metrics_go_with_a_removed_instance_and_stay_with_a_restarted_one() -> None:
    async def scenario() -> None:
        RecordingInstance.forgotten = []
        manager = InstanceManager(RecordingInstance)
        await manager.apply(cfgs("kept", "changed", "removed"))
        await manager.apply(cfgs("kept", "changed", changed=True))
        await manager.wait_drained()
        # the removed one forgets everything; the restarted one only what its successor no longer has
        assert sorted(RecordingInstance.forgotten) == [("changed", True), ("removed", False)]
        await manager.stop_all()
        assert sorted(RecordingInstance.forgotten) == [("changed", False), ("changed", True), ("kept", False),
                                                       ("removed", False)]

    asyncio.run(scenario())


def test_failed_start_is_reported_and_retried_with_backoff() -> None:
    async def scenario() -> None:
        RecordingInstance.broken = {"flaky"}
        manager = InstanceManager(RecordingInstance, retry_first=0.05, retry_max=0.2)
        try:
            result = await manager.apply(cfgs("ok", "broken-1", "flaky"))
            assert result.started == ["ok"]
            assert "cannot start" in result.failed["broken-1"] and "cannot start" in result.failed["flaky"]
            assert manager.running() == ["ok"]
            assert manager.failures() == {"broken-1": "RuntimeError: cannot start",
                                          "flaky": "RuntimeError: cannot start"}
            assert FAILED.labels("flaky")._value.get() == 1
            again = await manager.apply(cfgs("ok", "broken-1", "flaky"))
            assert again.started == [] and set(again.failed) == {"broken-1", "flaky"}  # still failed, waiting
            RecordingInstance.broken = set()
            recovered = asyncio.Event()
            manager.on_failures_changed = recovered.set
            async with asyncio.timeout(5):
                await recovered.wait()  # the retry loop started it, with no apply asking
            assert manager.running() == ["flaky", "ok"]
            assert list(manager.failures()) == ["broken-1"]
            assert 'instance_name="flaky"' not in _failed_samples()
            await manager.apply(cfgs("ok", "flaky"))  # a removed config is no longer failed
            assert manager.failures() == {}
        finally:
            RecordingInstance.broken = set()
            await manager.stop_all()

    asyncio.run(scenario())


def _failed_samples() -> str:
    return " ".join(f'instance_name="{s.labels["instance_name"]}"' for metric in FAILED.collect()
                    for s in metric.samples)


def test_a_stuck_drain_never_holds_up_starts() -> None:
    """A deleted instance whose remote never answers drains in the background; starts go on at once."""
    async def scenario() -> None:
        RecordingInstance.events = []
        manager = InstanceManager(StuckRemoteInstance)
        await manager.apply(cfgs(*(f"stuck-{i}" for i in range(5))))
        halted: list[str] = []

        async def on_halted(names: list[str]) -> None:
            halted.extend(names)

        began = time.monotonic()
        result = await manager.apply(cfgs("other"), on_halted=on_halted)
        assert time.monotonic() - began < 1.0
        assert result.started == ["other"] and sorted(result.stopped) == sorted(halted) and len(halted) == 5
        assert manager.running() == ["other"] and len(manager.draining()) == 5
        began = time.monotonic()
        await manager.apply(cfgs("other", "next"))  # any number of stuck drains, and starts go on
        assert time.monotonic() - began < 1.0 and manager.running() == ["next", "other"]
        again = await manager.apply(cfgs("other", "next", "stuck-0"))  # back: its old drain is cut short
        assert again.started == ["stuck-0"] and ("cut", "stuck-0") in RecordingInstance.events
        assert "stuck-0" not in manager.draining() and len(manager.draining()) == 4
        for _, task in list(manager._draining.values()):
            task.cancel()
        await manager.wait_drained()

    asyncio.run(scenario())


def test_ten_thousand_configs_apply_in_bulk() -> None:
    async def scenario() -> None:
        manager = InstanceManager(RecordingInstance)
        desired = cfgs(*(f"c{i}" for i in range(10_000)))
        result = await manager.apply(desired)
        assert len(result.started) == 10_000
        result = await manager.apply(desired)
        assert result.unchanged == 10_000 and not result.started

    asyncio.run(scenario())


class PreparingInstance(RecordingInstance):
    """Records prepare() too; halt/drain take the keyword the manager passes for a discarded one."""

    async def prepare(self) -> None:
        self.events.append(("prepare", self.name))

    async def halt(self, *, quiet: bool = False) -> None:
        self.events.append(("stop", self.name))

    async def drain(self, flush_deadline: float | None = None, *, quiet: bool = False) -> None:
        self.events.append(("drained", self.name))


def test_a_prepared_instance_only_begins_on_start_and_others_are_dropped() -> None:
    async def scenario() -> None:
        PreparingInstance.events = []
        manager = InstanceManager(PreparingInstance)
        made: list[str] = []
        factory = manager._factory

        def counting(cfg: InstanceConfig) -> PreparingInstance:
            made.append(cfg.name)
            return factory(cfg)  # type: ignore[return-value]

        manager._factory = counting  # type: ignore[assignment]
        wanted = cfgs("a", "b", "c")
        digests = {"a": "d1", "b": "d1", "c": "d1"}
        assert manager.prepare(wanted, digests) == 3
        assert manager.prepare(wanted, digests) == 0  # already under way
        await manager.wait_prepared()
        assert sorted(e for e in PreparingInstance.events if e[0] == "prepare") == [
            ("prepare", "a"), ("prepare", "b"), ("prepare", "c")]
        assert PreparingInstance.events.count(("start", "a")) == 0  # nothing scrapes while prepared

        result = await manager.start_more({"a": wanted["a"], "b": wanted["b"]}, {"a": "d1", "b": "d2"})
        assert sorted(result.started) == ["a", "b"]
        assert made.count("a") == 1  # the prepared one began
        assert made.count("b") == 2  # b changed meanwhile: its prepared instance was closed, a new one started
        assert ("stop", "b") in PreparingInstance.events
        assert manager.prepared() == ["c"]
        assert await manager.drop_prepared(keep=set()) == 1
        assert manager.prepared() == [] and ("drained", "c") in PreparingInstance.events
        assert manager.running() == ["a", "b"]
        await manager.stop_all()

    asyncio.run(scenario())


class GatedPreparingInstance(PreparingInstance):
    """prepare() holds its slot until the gate opens (a WAL open on a slow disk)."""

    gate: asyncio.Event

    async def prepare(self) -> None:
        self.events.append(("prepare", self.name))
        await self.gate.wait()


def test_a_start_does_not_wait_behind_queued_preparations() -> None:
    async def scenario() -> None:
        PreparingInstance.events = []
        GatedPreparingInstance.gate = asyncio.Event()
        manager = InstanceManager(GatedPreparingInstance, concurrency=1)
        wanted = cfgs("a", "b", "c")
        digests = dict.fromkeys(wanted, "d1")
        manager.prepare(wanted, digests)
        result = await manager.start_more({"c": wanted["c"]}, {"c": "d1"})  # "c" is still queued behind a, b
        assert result.started == ["c"]
        assert ("prepare", "c") not in PreparingInstance.events  # started from scratch, not after a and b
        GatedPreparingInstance.gate.set()
        await manager.stop_all()

    asyncio.run(scenario())
