"""After a restart during a config store outage, writes to an existing instance are asked to retry
(503 + Retry-After), never refused (400), until the store is back. Real etcd, stopped or frozen
(SIGSTOP), and a real node restarted meanwhile."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers.cluster_harness import INSTANCES, NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import wait_for
from tests.helpers.rw_payloads import simple_series, write_body

pytestmark = pytest.mark.slow

WRITE = "/agent/api/v1/metrics/instance/{}/write"
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_restart_during_store_outage_answers_503_not_400(tmp_path: Path, etcd: EtcdServer, outage: str) -> None:
    cluster = NodeCluster(tmp_path, etcd.endpoint)
    frozen = False
    try:
        (node,) = cluster.add(1)
        cluster.put(["team-a"])
        wait_for(lambda: node.get(INSTANCES).json()["data"] == ["team-a"], 30, what="team-a running")
        body = write_body(simple_series(3))
        assert node.request("POST", WRITE.format("team-a"), body, HEADERS).status == 204

        if outage == "stopped":
            etcd.stop()
        else:
            assert etcd.pid is not None
            os.kill(etcd.pid, signal.SIGSTOP)
            frozen = True
        node.stop()
        node.start(wait_ready=False)
        wait_for(lambda: _answers(node), 30, what="the restarted node to answer HTTP")

        statuses: list[int] = []
        for name in ("team-a", "team-a", "team-a", "never-stored"):
            resp = node.request("POST", WRITE.format(name), body, HEADERS, timeout=15)
            statuses.append(resp.status)
            assert resp.status == 503, (name, resp.status, resp.text)
            assert resp.headers.get("retry-after") == "1"
        assert node.get("/-/ready").status == 503  # not ready before its first reshard

        if outage == "stopped":
            etcd.start()
        else:
            os.kill(etcd.pid, signal.SIGCONT)  # type: ignore[arg-type]
            frozen = False

        def accepted() -> bool:
            statuses.append(node.request("POST", WRITE.format("team-a"), body, HEADERS, timeout=15).status)
            return statuses[-1] == 204

        wait_for(accepted, 60, interval=0.1, what="the write accepted once the store is back")
        assert set(statuses) <= {503, 204}, statuses
        assert node.request("POST", WRITE.format("never-stored"), body, HEADERS).status in (400, 503)
        wait_for(lambda: node.request("POST", WRITE.format("never-stored"), body, HEADERS).status == 400, 10,
                 what="a name the store does not hold refused once the store answers")
    finally:
        if frozen and etcd.pid is not None:
            os.kill(etcd.pid, signal.SIGCONT)
        cluster.close()


def _answers(node) -> bool:  # type: ignore[no-untyped-def]
    try:
        return node.get("/-/healthy", timeout=2).status == 200
    except OSError:
        return False
