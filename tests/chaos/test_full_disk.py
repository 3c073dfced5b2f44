"""A full disk (a small tmpfs holding the WALs, the embedded KV store and the search store): writes, pushes
and config PUTs are refused (never acknowledged and lost, never a reset) while it is full, and everything
works again once space is back, without a restart. Every acknowledged sample and line arrives downstream.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import pytest

from tests.chaos.helpers import acked_lines, lines_at, logs_config, logs_load, metrics_load, missing_metrics
from tests.helpers.e2e_helpers import FAST_QUEUE
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, node_config, wait_for
from tests.helpers.prometheus_server import PrometheusServer, available
from tests.helpers.tmpfs import fill, mounted_tmpfs

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="prometheus is not installed")]


def test_full_disk_refuses_then_recovers_without_restart(tmp_path: Path) -> None:
    run = "disk" + uuid.uuid4().hex[:8]
    with mounted_tmpfs(tmp_path / "disk", "96m") as disk, PrometheusServer(tmp_path, receiver=True) as prom, \
            LokiCapture() as loki:
        text = (node_config().replace("wal_directory: data-agent", f"wal_directory: {disk / 'data'}")
                + logs_config(disk / "positions", loki.url))
        node = NodeProcess(tmp_path / "node", text).start()
        body = f"remote_write:\n- url: {prom.write_url}\n  name: out\n  queue_config: {FAST_QUEUE}\n"
        assert node.request("PUT", "/agent/api/v1/config/relay", body).status == 201
        wait_for(lambda: "relay" in node.get("/agent/api/v1/metrics/instances").json()["data"], 30,
                 what="the instance to run")
        metrics = metrics_load(node.port, int(time.time() * 1000) - 60_000, threads=2, pause=0.01,
                               stop_on_error=False).start()
        logs = logs_load(node.port, run, threads=1, pause=0.01, stop_on_error=False).start()
        config_answers: dict[str, int] = {}
        try:
            wait_for(lambda: metrics.count() >= 50 and logs.count() >= 20, 20, what="writes before the disk fills")
            fill(disk / "filler")
            wait_for(lambda: sum(metrics.refused.values()) >= 20 and sum(logs.refused.values()) >= 5, 30,
                     what="writes and pushes refused on the full disk")
            full = node.request("PUT", "/agent/api/v1/config/while-full", "scrape_configs: []\n")
            config_answers["while-full"] = full.status
            assert full.status in (201, 500, 503, 507), full.text
            assert node.get("/-/healthy").status == 200
            # space comes back: everything works again, no restart
            (disk / "filler").unlink()
            acked_metrics, acked_logs = metrics.count(), logs.count()
            wait_for(lambda: metrics.count() >= acked_metrics + 50 and logs.count() >= acked_logs + 20, 30,
                     what="writes and pushes acknowledged again")
            again = node.request("PUT", "/agent/api/v1/config/after-full", "scrape_configs: []\n")
            assert again.status == 201, again.text
        finally:
            metrics.stop()
            logs.stop()
        try:
            if config_answers["while-full"] == 201:
                assert node.get("/agent/api/v1/configs/while-full").status == 200
            assert not set(metrics.refused) - {500, 503, 507}, metrics.refused
            assert not set(logs.refused) - {429, 500, 503, 507}, logs.refused
            assert metrics.errors == 0 and logs.errors == 0, "a reset instead of an answer"
            wait_for(lambda: not missing_metrics(metrics, prom), 60, interval=0.5,
                     what="every acknowledged sample at Prometheus")
            want = acked_lines(logs)
            samples = sum(n for _, n in metrics.acked)  # type: ignore[misc]
            with contextlib.suppress(AssertionError):
                wait_for(lambda: want <= set(lines_at(loki, run)), 30, interval=0.3,
                         what=f"{len(want)} acknowledged lines at the capture server")
            delivered = len(want & set(lines_at(loki, run)))
            print(f"\nCHAOS full disk: {len(metrics.acked)} writes / {samples} samples acknowledged, all delivered; "
                  f"{logs.count()} pushes / {len(want)} lines acknowledged, {delivered} delivered; refused metrics "
                  f"{metrics.refused}, logs {logs.refused}; config PUT while full: {config_answers['while-full']}")
            assert delivered == len(want), f"{delivered} of {len(want)} acknowledged lines forwarded"
        finally:
            node.stop()
