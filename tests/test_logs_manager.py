"""The logs manager: the desired-set diff it shares with the metrics manager, and self metrics that go with a
removed instance but stay with a restarted one (issue 15.6). Real WALs and search stores, in-process."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from service.config.schema import loads
from service.logs.config import LogsConfig
from service.logs.manager import LogsManager
from tests.helpers.aio import run


def _config(tmp_path: Path, names: dict[str, bool]) -> LogsConfig:
    """Instances without clients (name → search enabled)."""
    body = "".join(f"- name: {name}\n  search: {{enabled: {'true' if search else 'false'}}}\n"
                   for name, search in names.items())
    return loads(LogsConfig, f"positions_directory: {tmp_path / 'pos'}\nconfigs:\n{body}" if body else "{}")


def _series(name: str) -> set[str]:
    """Metric names with a series of logs instance ``name`` (its WAL's or its search store's)."""
    return {s.name for family in REGISTRY.collect() for s in family.samples
            if s.labels.get("instance_name") in (name, f"logs/{name}")}


def test_removed_instances_take_their_series_and_restarted_ones_keep_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        manager = LogsManager(None, str(tmp_path / "wal"))
        try:
            await manager.reload(_config(tmp_path, {"keep": True, "drop": True}))
            assert "agent_wal_storage_size_bytes" in _series("drop")
            assert "logs_search_lag_bytes" in _series("drop") and "logs_search_lag_bytes" in _series("keep")
            first = manager.instances["keep"]

            await manager.reload(_config(tmp_path, {"keep": False}))  # keep restarts without search
            assert manager.instances["keep"] is not first and sorted(manager.instances) == ["keep"]
            assert _series("drop") == set()
            kept = _series("keep")
            assert "agent_wal_storage_size_bytes" in kept and not any(n.startswith("logs_search") for n in kept)

            again = manager.instances["keep"]
            await manager.reload(_config(tmp_path, {"keep": False}))  # unchanged: not restarted
            assert manager.instances["keep"] is again
        finally:
            await manager.stop()

    run(scenario(), 60)
