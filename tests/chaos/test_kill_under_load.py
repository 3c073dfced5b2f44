"""kill -9 under load, metrics and logs at once: every acknowledged sample reaches a real Prometheus, every
acknowledged log line reaches the capture server (a stand-in: no Loki runs here) and is searchable.

(SIGKILL and SIGTERM of a remote_write-only load are also in tests/test_e2e_durability.py.)
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.chaos.helpers import (
    acked_lines,
    lines_at,
    logs_load,
    metrics_load,
    missing_metrics,
    relay_node,
    search_total,
)
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import wait_for
from tests.helpers.prometheus_server import PrometheusServer, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="prometheus is not installed")]


def test_kill_9_under_load_loses_no_acknowledged_sample_or_line(tmp_path: Path) -> None:
    run = "kill" + uuid.uuid4().hex[:8]
    with PrometheusServer(tmp_path, receiver=True) as prom, LokiCapture() as loki:
        node = relay_node(tmp_path / "node", prom.write_url, loki).start()
        metrics = metrics_load(node.port, int(time.time() * 1000) - 60_000, threads=4).start()
        logs = logs_load(node.port, run, threads=2).start()
        try:
            wait_for(lambda: metrics.count() >= 300 and logs.count() >= 100, 60,
                     what="300 acknowledged writes and 100 acknowledged pushes")
            node.kill()
        finally:
            metrics.stop()
            logs.stop()
        try:
            started = time.monotonic()
            node.start()
            wait_for(lambda: not missing_metrics(metrics, prom), 60, interval=0.5,
                     what="every acknowledged sample at Prometheus")
            want = acked_lines(logs)
            wait_for(lambda: want <= set(lines_at(loki, run)), 60, interval=0.3,
                     what=f"{len(want)} acknowledged lines at the capture server")
            caught_up = time.monotonic() - started
            arrived = lines_at(loki, run)
            samples = sum(n for _, n in metrics.acked)  # type: ignore[misc]
            print(f"\nCHAOS kill-9: {len(metrics.acked)} writes / {samples} samples and {logs.count()} pushes / "
                  f"{len(want)} lines acknowledged; all delivered {caught_up:.1f} s after restart; "
                  f"{len(arrived) - len(set(arrived))} lines delivered twice (at least once after a crash)")
            wait_for(lambda: search_total(node, run) >= len(want), 30, interval=0.5,
                     what="every acknowledged line searchable")
        finally:
            node.stop()
