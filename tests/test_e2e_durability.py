"""Durability through the whole node: whatever the node acknowledged reaches a real Prometheus receiver,
even when the node is killed (-9) or stopped (SIGTERM) under full-speed writes and then restarted.

The sender (tests/helpers/rw_sender.py) logs every request answered 204 with its sample count; request k carries
``k % 50 + 1`` series ``durable{req="k", s="i"}`` with one sample each, so the receiver's number of series
per ``req`` is the number of that request's samples it holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.e2e_helpers import WRITE, metric_sum, start_relay
from tests.helpers.node_process import REPO, NodeProcess, wait_for
from tests.helpers.prometheus_server import PrometheusServer

pytestmark = pytest.mark.slow

MIN_ACKED = 400


def run_sender_until_stopped(node: NodeProcess, log_path: Path, sig: int) -> dict[int, int]:
    """Full-speed writes; stop the node with ``sig`` mid-stream; the acknowledged requests and samples."""
    base_ms = int(time.time() * 1000) - 60_000
    sender = subprocess.Popen([sys.executable, "-m", "tests.helpers.rw_sender",
                               f"http://127.0.0.1:{node.port}{WRITE.format('relay')}", str(log_path), "8",
                               str(base_ms)], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    try:
        wait_for(lambda: log_path.exists() and log_path.read_text().count("\n") >= MIN_ACKED, 30,
                 what=f"{MIN_ACKED} acknowledged requests")
        code = node.stop(sig)
        if sig == signal.SIGTERM:
            assert code == 0, node.log()[-3000:]
        assert sender.wait(15) == 0
    finally:
        if sender.poll() is None:
            os.kill(sender.pid, signal.SIGKILL)
            sender.wait()
    return dict(tuple(map(int, line.split())) for line in log_path.read_text().splitlines())


def held_per_request(prom: PrometheusServer) -> dict[int, int]:
    result = prom.query("count by (req) (last_over_time(durable[1h]))")
    return {int(r["metric"]["req"]): int(r["value"][1]) for r in result}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_acknowledged_samples_reach_prometheus_across_restart(tmp_path: Path, sig: int) -> None:
    with PrometheusServer(tmp_path, receiver=True) as prom:
        node = start_relay(tmp_path / "node", "relay", prom.write_url)
        try:
            acked = run_sender_until_stopped(node, tmp_path / "acked.log", sig)
            assert len(acked) >= MIN_ACKED
            node.start()
            state: dict[str, dict[int, int]] = {}

            def complete() -> bool:
                state["held"] = held = held_per_request(prom)
                return all(held.get(k) == n for k, n in acked.items())

            try:
                wait_for(complete, 45, interval=0.5, what="every acknowledged sample at the receiver")
            except AssertionError:
                held = state.get("held", {})
                missing = {k: (n, held.get(k)) for k, n in acked.items() if held.get(k) != n}
                raise AssertionError(f"{len(missing)} of {len(acked)} acknowledged requests incomplete at the "
                                     f"receiver (want, got), e.g. {list(missing.items())[:5]}") from None
            assert metric_sum(node, "prometheus_remote_storage_samples_failed_total") == 0
        finally:
            node.stop()
    assert "level=error" not in node.log(), node.log()[-3000:]
