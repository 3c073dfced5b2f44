"""etcd frozen (SIGSTOP) with a node restart meanwhile, then etcd stopped: writes to a running instance go on,
the config API answers 503 in bounded time instead of hanging, a restarted node answers 503 + Retry-After
(never 400) until it can read its configs, and every acknowledged sample reaches a real Prometheus.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.chaos.helpers import metrics_load, missing_metrics
from tests.helpers.e2e_helpers import FAST_QUEUE
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, node_config, wait_for
from tests.helpers.prometheus_server import PrometheusServer, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="prometheus is not installed")]
def timed_status(node: NodeProcess, path: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = node.get(path, timeout=20).status
    except OSError:
        status = -1
    return status, time.monotonic() - started


def test_etcd_frozen_and_stopped_with_a_node_restart(tmp_path: Path, etcd: EtcdServer) -> None:
    if etcd.use_docker or etcd.pid is None:
        pytest.skip("freezing etcd needs it as a local process")
    with PrometheusServer(tmp_path, receiver=True) as prom:
        node = NodeProcess(tmp_path / "node", node_config(store="etcd", etcd_endpoints=[etcd.endpoint])).start()
        body = f"remote_write:\n- url: {prom.write_url}\n  name: out\n  queue_config: {FAST_QUEUE}\n"
        assert node.request("PUT", "/agent/api/v1/config/relay", body).status == 201
        wait_for(lambda: "relay" in node.get("/agent/api/v1/metrics/instances").json()["data"], 30,
                 what="the instance to run")
        load = metrics_load(node.port, int(time.time() * 1000) - 60_000, threads=2, pause=0.01,
                            stop_on_error=False).start()
        try:
            wait_for(lambda: load.count() >= 50, 20, what="writes before the outage")
            # 1. etcd frozen: writes go on, the config API answers in bounded time
            os.kill(etcd.pid, signal.SIGSTOP)
            frozen_at = load.count()
            try:
                wait_for(lambda: load.count() >= frozen_at + 50, 10, what="writes acknowledged with etcd frozen")
                status, took = timed_status(node, "/agent/api/v1/configs")
                assert status in (200, 503) and took < 15, (status, took)
                assert timed_status(node, "/-/healthy")[0] == 200
                # 2. the node restarts while etcd is still frozen
                node.stop()
                node.start(wait_ready=False)
                wait_for(lambda: node.get("/-/healthy", timeout=2).status == 200, 20, what="the node back up")
                answered = load.answered()
                wait_for(lambda: load.answered() >= answered + 100, 15,
                         what="100 writes answered by the restarted node during the freeze")
            finally:
                os.kill(etcd.pid, signal.SIGCONT)
            node.wait_ready(30)
            wait_for(lambda: "relay" in node.get("/agent/api/v1/metrics/instances").json()["data"], 30,
                     what="the instance back after the freeze")
            # 3. etcd stopped: the running instance keeps taking writes
            stopped_at = load.count()
            etcd.stop()
            try:
                wait_for(lambda: load.count() >= stopped_at + 50, 10, what="writes acknowledged with etcd down")
                status, took = timed_status(node, "/agent/api/v1/configs")
                assert status == 503 and took < 15, (status, took)
            finally:
                etcd.start()
            wait_for(lambda: node.get("/agent/api/v1/configs").status == 200, 20, what="the config API back")
            wait_for(lambda: load.count() >= stopped_at + 100, 10, what="writes after etcd is back")
        finally:
            load.stop()
        try:
            wait_for(lambda: not missing_metrics(load, prom), 60, interval=0.5,
                     what="every acknowledged sample at Prometheus")
            samples = sum(n for _, n in load.acked)  # type: ignore[misc]
            print(f"\nCHAOS etcd: {len(load.acked)} writes / {samples} samples acknowledged, all delivered; "
                  f"refused {load.refused}, connection errors {load.errors}")
            assert not set(load.refused) - {503}, f"only 503 while the store cannot say: {load.refused}"
        finally:
            node.stop()
