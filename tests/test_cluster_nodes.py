"""The cluster with real node subprocesses on loopback: one embedded node, and 3-5 nodes on a real etcd."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

import service.kv.etcd  # noqa: F401  (a required dependency: a broken install fails here, never a skip)
from tests.helpers.cluster_harness import INSTANCES, LEASE_TTL, NodeCluster, cluster_config, instance_starts
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, wait_for

NAMES = [f"cfg-{i:03d}" for i in range(200)]
TTL = LEASE_TTL  # of the `cluster` fixture's nodes


def test_single_embedded_node_is_a_ring_of_one(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "solo", cluster_config("solo", store="embedded")).start()
    try:
        ring = node.get("/agent/api/v1/cluster/ring").json()["data"]
        assert [(m["id"], m["state"]) for m in ring["members"]] == [("solo", "ACTIVE")]
        for name in ("a", "b", "c"):
            assert node.request("PUT", f"/agent/api/v1/config/{name}", "scrape_configs: []\n").status == 201
        wait_for(lambda: node.get(INSTANCES).json()["data"] == ["a", "b", "c"], 5, what="three instances")
        ring = node.get("/agent/api/v1/cluster/ring").json()["data"]
        assert ring["members"][0]["owned"] == 3
        assert {(c["name"], c["owner"], c["running"]) for c in ring["configs"]} == {
            ("a", "solo", True), ("b", "solo", True), ("c", "solo", True)}
        forced = node.request("POST", "/agent/api/v1/cluster/reshard").json()["data"]
        assert forced["ok"] and forced["unchanged"] == 3 and forced["started"] == 0
        metrics = node.get("/metrics").text
        assert 'agent_dskit_ring_members{state="ACTIVE"} 1.0' in metrics
        assert 'agent_metrics_scraping_service_reshard_duration_count{success="1"}' in metrics
        assert "agent_cluster_configs_owned 3.0" in metrics
    finally:
        node.stop(signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
    log = node.log()
    assert '"left the ring"' in log and '"node stopped"' in log


# --- multi-node, real etcd ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("size", [3, 5])
def test_configs_run_on_exactly_one_node(cluster: NodeCluster, size: int) -> None:
    cluster.add(size)
    nodes = list(cluster.nodes.values())
    for i, node in enumerate(nodes):  # PUT through every node
        cluster.put(NAMES[i::size], via=node)
    cluster.wait_exactly_once(NAMES, 20)
    running = cluster.running()
    assert all(running.values()), running  # every node got a share
    ring = nodes[0].get("/agent/api/v1/cluster/ring").json()["data"]
    assert len(ring["members"]) == size and all(m["state"] == "ACTIVE" for m in ring["members"])
    owners = {c["name"]: c["owner"] for c in ring["configs"]}
    assert all(name in running[owners[name]] for name in NAMES)  # the ring API agrees with the nodes


@pytest.mark.slow
def test_kill_and_sigterm_hand_over(cluster: NodeCluster) -> None:
    cluster.add(3)
    cluster.put(NAMES)
    cluster.wait_exactly_once(NAMES, 20)
    cluster.remove("n0", signal.SIGKILL)
    took = cluster.wait_exactly_once(NAMES, TTL + 5, what="survivors take over after kill -9")
    print(f"kill -9 takeover: {took:.2f}s (lease TTL {TTL:g}s)")
    stopped = cluster.remove("n1", signal.SIGTERM)
    took = cluster.wait_exactly_once(NAMES, 5, what="survivor takes over after SIGTERM")
    print(f"SIGTERM takeover: {took:.2f}s")
    assert '"left the ring"' in stopped.log()


@pytest.mark.slow
def test_join_moves_only_its_share(cluster: NodeCluster) -> None:
    cluster.add(3)
    cluster.put(NAMES)
    cluster.wait_exactly_once(NAMES, 20)
    before = cluster.running()
    starts_before = {nid: instance_starts(n) for nid, n in cluster.nodes.items()}
    (joined,) = cluster.add(1)

    def settled() -> bool:
        return cluster.exactly_once(NAMES) and bool(cluster.running()[joined.node_id])  # type: ignore[attr-defined]

    wait_for(settled, 20, what="the joiner takes its share")
    after = cluster.running()
    moved = set(after[joined.node_id])  # type: ignore[attr-defined]
    ideal = len(NAMES) / 4
    assert 0.5 * ideal <= len(moved) <= 1.3 * ideal, len(moved)  # its share: not one config, not half
    for nid, names in before.items():
        assert set(after[nid]) == set(names) - moved  # old nodes only lost what moved
        assert instance_starts(cluster.nodes[nid]) == starts_before[nid]  # and restarted nothing


@pytest.mark.slow
def test_never_two_nodes_at_once_under_churn(cluster: NodeCluster) -> None:
    cluster.add(3)
    cluster.put(NAMES[:100])
    cluster.wait_exactly_once(NAMES[:100], 20)
    violations: list[tuple[float, list[str]]] = []
    polls = failed_polls = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal polls, failed_polls
        while not stop.is_set():
            try:
                dup = NodeCluster.duplicates(cluster.running())
            except (OSError, KeyError, ValueError):
                failed_polls += 1  # a node going away mid-poll: this poll saw nothing
            else:
                polls += 1
                if dup:
                    violations.append((time.monotonic(), dup))
            stop.wait(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for round_ in range(3):
            cluster.add(1)
            leaving = sorted(cluster.nodes)[0]
            cluster.remove(leaving, signal.SIGTERM if round_ % 2 == 0 else signal.SIGKILL)
            cluster.wait_exactly_once(NAMES[:100], TTL + 10)
    finally:
        stop.set()
        poller.join()
    assert polls > 20, (polls, failed_polls)  # only polls that saw every node count
    assert violations == []


@pytest.mark.slow
def test_edit_restarts_on_owner_only_and_delete_stops_everywhere(cluster: NodeCluster) -> None:
    cluster.add(3)
    cluster.put(NAMES[:30])
    cluster.wait_exactly_once(NAMES[:30], 20)
    starts = {nid: instance_starts(n) for nid, n in cluster.nodes.items()}
    owner = next(nid for nid, names in cluster.running().items() if "cfg-005" in names)
    cluster.put(["cfg-005"], extra="wal_truncate_frequency: 30m\n")
    wait_for(lambda: instance_starts(cluster.nodes[owner])["cfg-005"] == starts[owner]["cfg-005"] + 1, 10,
             what="the owner restarts the edited config")
    for nid, node in cluster.nodes.items():
        expected = starts[nid].copy()
        if nid == owner:
            expected["cfg-005"] += 1
        assert instance_starts(node) == expected
    first = next(iter(cluster.nodes.values()))
    assert first.request("DELETE", "/agent/api/v1/config/cfg-006").status == 200
    cluster.wait_exactly_once([n for n in NAMES[:30] if n != "cfg-006"], 10, what="delete stops it")


@pytest.mark.slow
def test_etcd_outage_keeps_instances_and_converges_without_restarts(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "etcd-data")
    server.start()
    c = NodeCluster(tmp_path, server.endpoint, lease_ttl="4s", heartbeat="500ms")
    try:
        c.add(3)
        c.put(NAMES[:60])
        c.wait_exactly_once(NAMES[:60], 20)
        before = c.running()
        starts = {nid: instance_starts(n) for nid, n in c.nodes.items()}
        server.stop()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the whole outage: nothing stops
            assert c.running() == before
            time.sleep(0.5)
        server.start()
        wait_for(lambda: all(n.request("POST", "/agent/api/v1/cluster/reshard", timeout=40).json()["data"]["ok"]
                             for n in c.nodes.values()), 30, interval=0.5, what="reshards succeed again")
        assert c.running() == before
        assert {nid: instance_starts(n) for nid, n in c.nodes.items()} == starts
    finally:
        c.close()
        server.remove()
