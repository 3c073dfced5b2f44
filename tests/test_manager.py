"""The instance manager applies only the difference between the desired and the running set."""

from __future__ import annotations

import asyncio

from service.metrics.config import InstanceConfig
from service.metrics.manager import InstanceManager


class RecordingInstance:
    """A minimal instance that records its lifecycle (the manager is the unit under test)."""

    events: list[tuple[str, str]] = []

    def __init__(self, cfg: InstanceConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg

    async def start(self) -> None:
        if self.name.startswith("broken"):
            raise RuntimeError("cannot start")
        self.events.append(("start", self.name))

    async def stop(self) -> None:
        self.events.append(("stop", self.name))


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
        assert sorted(RecordingInstance.events) == sorted([("stop", "c"), ("stop", "b"), ("start", "b"),
                                                           ("start", "d")])
        RecordingInstance.events.clear()
        third = await manager.apply(cfgs("a", "b", "d", b=True))
        assert (third.started, third.stopped, third.restarted, third.unchanged) == ([], [], [], 3)
        assert RecordingInstance.events == []
        await manager.stop_all()
        assert manager.running() == []

    asyncio.run(scenario())


def test_failed_start_is_reported_and_retried() -> None:
    async def scenario() -> None:
        manager = InstanceManager(RecordingInstance)
        result = await manager.apply(cfgs("ok", "broken-1"))
        assert result.started == ["ok"]
        assert "broken-1" in result.failed and "cannot start" in result.failed["broken-1"]
        assert manager.running() == ["ok"]
        again = await manager.apply(cfgs("ok", "broken-1"))
        assert "broken-1" in again.failed  # tried again on the next apply

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
