"""A remote outage, then catch-up: Prometheus is stopped and the Loki stand-in answers 503 for the outage;
the node keeps acknowledging into its WALs (or refuses with 429/503 when full, never a reset), and once the
peers are back every acknowledged sample and line arrives.

The outage lasts 20 s in CI; CHAOS_SOAK=1 makes it 10 minutes (a soak run, out of CI).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.chaos.helpers import SOAK, acked_lines, lines_at, logs_load, metrics_load, missing_metrics, relay_node
from tests.helpers.e2e_helpers import metric_sum
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import wait_for
from tests.helpers.prometheus_server import PrometheusServer, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="prometheus is not installed")]
OUTAGE = 600.0 if SOAK else 20.0


def test_remote_outage_then_catch_up(tmp_path: Path) -> None:
    run = "outage" + uuid.uuid4().hex[:8]
    with PrometheusServer(tmp_path, receiver=True) as prom, LokiCapture() as loki:
        node = relay_node(tmp_path / "node", prom.write_url, loki).start()
        metrics = metrics_load(node.port, int(time.time() * 1000) - 60_000, threads=1, pause=0.02,
                               stop_on_error=False).start()
        logs = logs_load(node.port, run, threads=1, pause=0.05, stop_on_error=False).start()
        slowest = 0.0
        try:
            wait_for(lambda: metrics.count() >= 50 and logs.count() >= 20, 20, what="writes before the outage")
            prom.stop()
            loki.capture.fail(503)
            outage_start = time.monotonic()
            before = (metrics.count(), logs.count())
            while time.monotonic() - outage_start < OUTAGE:  # the outage: the node is probed throughout
                started = time.monotonic()
                assert node.get("/-/healthy", timeout=10).status == 200
                slowest = max(slowest, time.monotonic() - started)
                mark = metrics.count()
                wait_for(lambda m=mark: metrics.count() >= m + 25, 15, interval=0.1,
                         what="writes acknowledged throughout the outage")
            assert metrics.count() > before[0] and logs.count() > before[1], "nothing acknowledged in the outage"
            assert metric_sum(node, "prometheus_remote_storage_samples_retried_total") > 0
            during = (metrics.count() - before[0], logs.count() - before[1])
            prom.start()
            loki.capture.recover()
            recovered = time.monotonic()
            wait_for(lambda: metrics.count() >= during[0] + before[0] + 20, 20, what="writes after the outage")
        finally:
            metrics.stop()
            logs.stop()
        try:
            assert not set(metrics.refused) - {429, 503}, metrics.refused
            assert not set(logs.refused) - {429, 503}, logs.refused
            assert metrics.errors == 0 and logs.errors == 0, "a reset instead of an answer"
            wait_for(lambda: not missing_metrics(metrics, prom), 120 if SOAK else 60, interval=0.5,
                     what="every acknowledged sample at Prometheus")
            want = acked_lines(logs)
            wait_for(lambda: want <= set(lines_at(loki, run)), 120 if SOAK else 60, interval=0.3,
                     what=f"{len(want)} acknowledged lines at the capture server")
            caught_up = time.monotonic() - recovered
            samples = sum(n for _, n in metrics.acked)  # type: ignore[misc]
            print(f"\nCHAOS outage {OUTAGE:.0f} s: {len(metrics.acked)} writes / {samples} samples and "
                  f"{logs.count()} pushes / {len(want)} lines acknowledged ({during[0]} writes and {during[1]} "
                  f"pushes during the outage), all delivered {caught_up:.1f} s after the peers came back; "
                  f"slowest /-/healthy {slowest * 1000:.0f} ms; refused {metrics.refused} {logs.refused}")
            assert metric_sum(node, "prometheus_remote_storage_samples_failed_total") == 0
        finally:
            node.stop()
