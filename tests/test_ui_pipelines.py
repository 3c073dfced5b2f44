"""The UI's pipeline view reads the node's own self metrics, which name their config in `instance_name`.

In process: a real WAL per config and the real module-level metrics, read back through the real registry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.metrics.instance import SAMPLES_APPENDED
from service.metrics.remote import metrics as remote_metrics
from service.ui.pipelines import LOGS_PREFIX, snapshot
from service.wal import WAL
from tests.helpers.wal_helpers import payload


def test_pipeline_view_groups_wals_and_queues_by_config(tmp_path: Path) -> None:
    """Two configs with a remote of the same name on one node stay apart, and a logs WAL is listed as such."""
    names = ("ui-pipe-a", "ui-pipe-b")

    async def main() -> None:
        for name in (*names, LOGS_PREFIX + "ui-pipe-logs"):
            wal = WAL.open(str(tmp_path / name.replace("/", "_")), instance=name)
            wal.append(1, payload(1))
            await wal.sync_barrier()
            await wal.aclose()

    asyncio.run(main())
    SAMPLES_APPENDED.labels(names[0]).inc(7)
    for name, sent in zip(names, (3, 5), strict=True):
        remote_metrics.SAMPLES.labels("r", "http://127.0.0.1:1/write", name).inc(sent)
    try:
        data = snapshot()
        metrics = {m["instance"]: m for m in data["metrics"] if m["instance"] in names}
        assert sorted(metrics) == list(names)
        assert metrics[names[0]]["wal"]["samples_appended"] == 7
        assert metrics[names[0]]["wal"]["records_appended"] == 1 and metrics[names[0]]["wal"]["size_bytes"] > 0
        for name, sent in zip(names, (3, 5), strict=True):
            (remote,) = metrics[name]["remotes"]
            assert (remote["instance"], remote["remote_name"], remote["samples_sent"]) == (name, "r", sent)
        assert [w["instance"] for w in data["logs_wals"] if w["instance"] == "ui-pipe-logs"] == ["ui-pipe-logs"]
    finally:
        for name in names:
            remote_metrics.forget("r", "http://127.0.0.1:1/write", name)
