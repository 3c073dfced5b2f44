"""Instances on real nodes: a stuck remote never blocks a start, a slow stop never holds up a handoff, and an
instance that fails to start says so.

The stuck remote is `http://127.0.0.1:1/api/v1/write`: nothing listens there, so every send fails and a
stopping instance keeps retrying until `remote_flush_deadline` (1 m by default) gives up.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.certs import make_certs
from tests.helpers.cluster_harness import INSTANCES, NodeCluster, cluster_config, config_body
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, wait_for

STUCK_REMOTE = "remote_write:\n  - url: http://127.0.0.1:1/api/v1/write\n"
CONFIG = "/agent/api/v1/config/"


def solo(tmp_path: Path, *, allow_files: bool = False) -> NodeProcess:
    text = cluster_config("solo", store="embedded")
    if allow_files:
        text = text.replace("    enabled: true\n", "    enabled: true\n    dangerous_allow_reading_files: true\n")
    return NodeProcess(tmp_path / "solo", text).start()


def self_scrape(node: NodeProcess, name: str, extra: str = "", interval: str = "200ms") -> str:
    """A config scraping the node's own /metrics, so its WAL holds samples to send."""
    return (f"scrape_configs:\n  - job_name: {name}\n    scrape_interval: {interval}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{node.port}']\n{extra}")


def scraped(node: NodeProcess) -> set[str]:
    """The instances whose target was scraped successfully at least once (so their WAL holds samples)."""
    targets = node.get("/agent/api/v1/metrics/targets").json()["data"]
    return {t["instance"] for t in targets if t["state"] == "up"}


def test_a_deleted_config_with_a_stuck_remote_never_blocks_a_start(tmp_path: Path) -> None:
    node = solo(tmp_path)
    try:
        assert node.request("PUT", CONFIG + "stuck", self_scrape(node, "stuck", STUCK_REMOTE)).status == 201
        wait_for(lambda: "stuck" in scraped(node), 10, what="the stuck config has samples to send")
        assert node.request("DELETE", CONFIG + "stuck").status == 200
        wait_for(lambda: node.get(INSTANCES).json()["data"] == [], 5, what="the stuck config stops scraping")
        began = time.monotonic()
        assert node.request("PUT", CONFIG + "next", config_body("next")).status == 201
        wait_for(lambda: node.get(INSTANCES).json()["data"] == ["next"], 3, what="the next config starts")
        took = time.monotonic() - began
        assert took < 3.0, took
        metrics = node.get("/metrics").text
        assert "agent_metrics_instances_draining 1.0" in metrics  # the stuck one still tries to send
        assert '"reshard timed out"' not in node.log()
    finally:
        node.stop(signal.SIGKILL)  # a SIGTERM would wait for the stuck drain (up to remote_flush_deadline)


def test_an_instance_that_fails_to_start_says_so(tmp_path: Path) -> None:
    node = solo(tmp_path, allow_files=True)
    ca = tmp_path / "ca.pem"
    body = config_body("tls", f"remote_write:\n  - url: https://127.0.0.1:1/api/v1/write\n"
                              f"    tls_config:\n      ca_file: {ca}\n")
    try:
        assert node.request("PUT", CONFIG + "tls", body).status == 201
        assert node.request("PUT", CONFIG + "fine", config_body("fine")).status == 201

        def failed_everywhere() -> bool:
            instances = node.get(INSTANCES).json()
            ring = {c["name"]: c for c in node.get("/agent/api/v1/cluster/ring").json()["data"]["configs"]}
            return (instances["data"] == ["fine"] and [f["name"] for f in instances.get("failed", [])] == ["tls"]
                    and ring["tls"]["state"] == "failed" and ring["tls"]["running"] is False
                    and ring["fine"]["running"] is True)

        wait_for(failed_everywhere, 10, what="the failure in the instances and ring APIs")
        instances = node.get(INSTANCES).json()
        assert "ca.pem" in instances["failed"][0]["error"]
        ring = {c["name"]: c for c in node.get("/agent/api/v1/cluster/ring").json()["data"]["configs"]}
        assert "ca.pem" in ring["tls"]["error"]
        targets = node.get("/agent/api/v1/metrics/targets").json()["data"]
        down = [t for t in targets if t["instance"] == "tls"]
        assert [(t["target_group"], t["state"]) for t in down] == [("tls", "down")]
        assert "instance failed to start" in down[0]["scrape_error"] and "ca.pem" in down[0]["scrape_error"]
        assert 'agent_metrics_instance_failed{instance_name="tls"} 1.0' in node.get("/metrics").text
        wait_for(lambda: node.log().count('"instance failed to start; retrying"') >= 2, 10,
                 what="a retry (backoff starts at 1 s)")
        assert "Traceback" not in node.log()

        ca.write_bytes(make_certs(tmp_path / "certs")["ca.crt"].read_bytes())  # the next retry starts it
        wait_for(lambda: node.get(INSTANCES).json()["data"] == ["fine", "tls"], 20, what="the retry succeeds")
        wait_for(lambda: {c["name"]: c["state"] for c in
                          node.get("/agent/api/v1/cluster/ring").json()["data"]["configs"]}["tls"] == "running",
                 10, what="the ring API shows it running")
        assert "failed" not in node.get(INSTANCES).json()
        assert 'agent_metrics_instance_failed{instance_name="tls"}' not in node.get("/metrics").text
    finally:
        node.stop(signal.SIGKILL)


def _series(node: NodeProcess, name: str) -> set[str]:
    """The self-metric series of instance `name` on /metrics (name and labels, without the value)."""
    mark = f'instance_name="{name}"'
    return {line.rsplit(" ", 1)[0] for line in node.get("/metrics").text.splitlines()
            if not line.startswith("#") and mark in line}


@pytest.mark.slow
def test_self_metrics_stay_through_an_update_and_go_with_a_deleted_config(tmp_path: Path) -> None:
    """Issue 15.6: a restarted instance keeps its series (only a dropped remote_write endpoint's go), a deleted
    one's series all go once it drained. The remotes never answer; remote_flush_deadline keeps drains short."""
    node = solo(tmp_path)
    first = "remote_flush_deadline: 1s\nremote_write:\n  - url: http://127.0.0.1:1/api/v1/write\n    name: one\n"
    second = first.replace("127.0.0.1:1/", "127.0.0.1:2/").replace("name: one", "name: two")
    try:
        assert node.request("PUT", CONFIG + "doomed", self_scrape(node, "doomed", first)).status == 201
        wait_for(lambda: "doomed" in scraped(node), 10, what="the config runs and appends to its WAL")
        wait_for(lambda: any(s.startswith("agent_wal_samples_appended_total") for s in _series(node, "doomed")),
                 10, what="its WAL and sample series")
        before = _series(node, "doomed")
        assert any(s.startswith("agent_wal_storage_size_bytes") for s in before)
        assert any('remote_name="one"' in s for s in before)

        assert node.request("PUT", CONFIG + "doomed", self_scrape(node, "doomed", second)).status == 200
        wait_for(lambda: any('remote_name="two"' in s for s in _series(node, "doomed")), 10,
                 what="the updated config's new endpoint")
        wait_for(lambda: not any('remote_name="one"' in s for s in _series(node, "doomed")), 10,
                 what="the dropped endpoint's series gone")
        after = _series(node, "doomed")
        kept = {s for s in before if 'remote_name="one"' not in s}
        assert kept <= after, kept - after

        assert node.request("DELETE", CONFIG + "doomed").status == 200
        wait_for(lambda: not _series(node, "doomed"), 15, what="every series of the deleted config gone")
    finally:
        node.stop(signal.SIGKILL)


# --- a slow stop on real etcd ---------------------------------------------------------------------------

@pytest.mark.slow
def test_handoff_when_the_old_node_is_slow_to_stop(tmp_path: Path, etcd: EtcdServer) -> None:
    """Every config's remote is stuck, so each stopping instance drains for remote_flush_deadline (1 m):
    a join and a SIGTERM still hand every moved config over within seconds, while the old node drains."""
    cluster = NodeCluster(tmp_path, etcd.endpoint, lease_ttl="2s")
    names = [f"slow-{i:02d}" for i in range(24)]
    try:
        (first,) = cluster.add(1)
        for name in names:
            assert first.request("PUT", CONFIG + name, self_scrape(first, name, STUCK_REMOTE, "1s")).status == 201
        cluster.wait_exactly_once(names, 20)
        wait_for(lambda: scraped(first) == set(names), 90, what="every WAL holds samples")
        (joined,) = cluster.add(1)
        # every drain runs for remote_flush_deadline (1 m); the deadline leaves room for a loaded CI machine
        took = cluster.wait_exactly_once(names, 15, what="the joiner takes its share while n0 drains")
        moved = cluster.running()[joined.node_id]  # type: ignore[attr-defined]
        assert moved, "the joiner took nothing"
        print(f"join with stuck remotes: every config placed {took:.2f}s after the joiner was ready")
        old = cluster.nodes["n0"]
        assert 'agent_metrics_instances_draining 0.0' not in old.get("/metrics").text  # still draining

        began = time.monotonic()
        os.kill(old.pid, signal.SIGTERM)  # hand over first, flush afterwards
        del cluster.nodes["n0"]
        cluster.wait_exactly_once(names, 15, what="n1 takes everything after SIGTERM")
        took = time.monotonic() - began
        assert old.proc is not None and old.proc.poll() is None, "n0 should still be draining its WALs"
        print(f"SIGTERM with stuck remotes: every config on n1 after {took:.2f}s, n0 still draining")
        assert '"left the ring"' in old.log()
        old.stop(signal.SIGKILL)
    finally:
        cluster.close()
