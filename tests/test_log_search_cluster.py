"""Cluster-wide log search on 3 real nodes sharing a real etcd: every node answers for the whole cluster,
exactly (totals, pages, histograms, containers), names the nodes that did not answer, and keeps tenants
apart. Each node receives its own disjoint, counted set of lines, with timestamps that overlap the others'.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, wait_for

pytestmark = pytest.mark.slow

LOGS = """logs:
  positions_directory: positions
  configs:
    - name: default
      search: {retention: 3650d, retention_interval: 1s, peer_timeout: 2s}
"""
T0 = 1_700_000_000_000  # ms; every node's lines fall in the same few seconds after it
LINES = {"n0": 230, "n1": 170, "n2": 120}




def push(node: NodeProcess, node_id: str, count: int, tenant: str = "") -> None:
    """`count` lines from containers a/b/c; timestamps interleave with other nodes' (ties included)."""
    streams: dict[str, list[list[str]]] = {}
    for i in range(count):
        container = "abc"[i % 3]
        ts_ns = (T0 + (i % 40) * 100) * 1_000_000  # 40 distinct ms values shared by every node
        streams.setdefault(container, []).append([str(ts_ns), f"{node_id} line {i} checkout"])
    body = {"streams": [{"stream": {"container": c, "node_hint": node_id}, "values": v} for c, v in streams.items()]}
    headers = {"Content-Type": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    resp = node.request("POST", "/loki/api/v1/push", json.dumps(body), headers)
    assert resp.status == 204, resp.text


def api(node: NodeProcess, path: str, tenant: str = "", **params: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    query = urlencode({k: str(v) for k, v in params.items()})
    resp = node.request("GET", f"{path}?{query}" if query else path, headers=headers, timeout=20)
    return resp.status, resp.json(), resp.headers


@pytest.fixture
def cluster(tmp_path: Path, etcd: EtcdServer) -> Iterator[NodeCluster]:
    # A long lease: a node frozen by a test stays a member (so its absence makes answers partial) however long
    # a loaded machine takes; with the 2 s default its lease could expire between two queries, and the ring
    # without it gave a complete answer.
    c = NodeCluster(tmp_path, etcd.endpoint, lease_ttl="60s")
    try:
        c.add(3, extra=LOGS)
        yield c
    finally:
        c.close()


def wait_indexed(cluster: NodeCluster, expected: dict[str, int], tenant: str = "") -> None:
    for node_id, count in expected.items():
        node = cluster.nodes[node_id]
        wait_for(lambda n=node, c=count: api(n, "/api/logs/search", tenant, scope="local", limit=1)[1]["data"]
                 ["total"] == c, timeout=30, what=f"{node_id} indexed {count} lines")


def wait_all_peers(cluster: NodeCluster) -> None:
    """Every node's last reshard saw every other node ACTIVE (the fan-out asks the nodes it saw)."""
    def seen() -> bool:
        return all(len(n.get("/agent/api/v1/cluster/ring").json()["data"]["members"]) == len(cluster.nodes)
                   for n in cluster.nodes.values())
    wait_for(seen, timeout=30, what="every node sees the whole ring")
    wait_for(lambda: all(api(n, "/api/logs/search", limit=1)[1]["data"].get("partial") is False
                         for n in cluster.nodes.values()), timeout=30, what="every node answers for all")


def test_every_node_answers_exactly_for_the_whole_cluster(cluster: NodeCluster) -> None:
    for node_id, count in LINES.items():
        push(cluster.nodes[node_id], node_id, count)
    wait_indexed(cluster, LINES)
    wait_all_peers(cluster)
    total = sum(LINES.values())
    expected_lines = {f"{nid} line {i} checkout" for nid, n in LINES.items() for i in range(n)}
    window = {"fromTimestamp": T0 - 60_000, "toTimestamp": T0 + 60_000}
    local_hists = {nid: api(n, "/api/logs/histogram", scope="local", bucket=1000, **window)[1]["data"]
                   for nid, n in cluster.nodes.items()}
    for asker in cluster.nodes.values():
        status, body, _ = api(asker, "/api/logs/search", query="checkout", limit=1)
        assert status == 200 and body["data"]["total"] == total and body["data"]["partial"] is False
        # Walking every page gives every line once, newest first, in one stable order.
        seen, order, offset = [], [], 0
        while True:
            status, body, _ = api(asker, "/api/logs/search", limit=97, offset=offset)
            assert status == 200, body
            logs = body["data"]["logs"]
            if not logs:
                break
            seen += [e["message"] for e in logs]
            order += [(-e["timestamp"], e["node"], -int(e["id"])) for e in logs]
            offset += len(logs)
        assert len(seen) == total and set(seen) == expected_lines
        assert order == sorted(order)
        # Histograms are the sums of every node's own histogram.
        status, body, _ = api(asker, "/api/logs/histogram", bucket=1000, **window)
        assert status == 200
        summed: dict[int, int] = {}
        for hist in local_hists.values():
            for b in hist["buckets"]:
                summed[b["timestamp"]] = summed.get(b["timestamp"], 0) + b["count"]
        assert {b["timestamp"]: b["count"] for b in body["data"]["buckets"]} == summed
        assert body["data"]["total"] == total
        # Containers are merged: counts summed over nodes.
        status, body, _ = api(asker, "/api/logs/containers")
        counts = {c["name"]: c["count"] for c in body["data"]}
        want = {c: sum(len(range(i, n, 3)) for n in LINES.values()) for i, c in enumerate("abc")}
        assert counts == want
        status, body, _ = api(asker, "/api/containers/a")
        assert status == 200 and body["data"]["count"] == want["a"]
        # scope=local is this node's share only.
        nid = asker.node_id  # type: ignore[attr-defined]
        assert api(asker, "/api/logs/search", scope="local", limit=1)[1]["data"]["total"] == LINES[nid]
    # The chat's tools count over the whole cluster too.
    resp = cluster.nodes["n0"].request("POST", "/api/chat", json.dumps(
        {"messages": [{"role": "user", "content": "list sources"}]}), {"Content-Type": "application/json"})
    assert resp.status == 200, resp.text
    assert str(want["a"]) in json.dumps(resp.json()["data"])


def test_tenants_stay_apart_across_nodes(cluster: NodeCluster) -> None:
    push(cluster.nodes["n0"], "n0", 30, tenant="team-a")
    push(cluster.nodes["n1"], "n1", 20, tenant="team-a")
    push(cluster.nodes["n2"], "n2", 50, tenant="team-b")
    wait_indexed(cluster, {"n0": 30, "n1": 20}, tenant="team-a")
    wait_indexed(cluster, {"n2": 50}, tenant="team-b")
    wait_all_peers(cluster)
    for asker in cluster.nodes.values():
        assert api(asker, "/api/logs/search", "team-a", limit=100)[1]["data"]["total"] == 50
        assert api(asker, "/api/logs/search", "team-b", limit=100)[1]["data"]["total"] == 50
        assert api(asker, "/api/logs/search", limit=1)[1]["data"]["total"] == 0
        logs = api(asker, "/api/logs/search", "team-b", limit=100)[1]["data"]["logs"]
        assert {e["node"] for e in logs} == {"n2"}


def test_a_stopped_node_makes_the_answer_partial_never_wrong_in_silence(cluster: NodeCluster) -> None:
    for node_id, count in LINES.items():
        push(cluster.nodes[node_id], node_id, count)
    wait_indexed(cluster, LINES)
    wait_all_peers(cluster)
    stopped = cluster.nodes["n2"]
    stopped.proc.send_signal(signal.SIGSTOP)  # frozen: still in the ring, but answers nothing
    try:
        started = time.monotonic()
        status, body, headers = api(cluster.nodes["n0"], "/api/logs/search", limit=5)
        assert status == 200
        assert body["data"]["partial"] is True and body["data"]["missingNodes"] == ["n2"]
        assert body["data"]["total"] == LINES["n0"] + LINES["n1"]
        assert headers["x-scraping-service-partial"] == "n2"
        assert time.monotonic() - started < 10  # the peer deadline (2 s), not the frozen node, bounds it
        status, body, _ = api(cluster.nodes["n1"], "/api/logs/containers")
        assert status == 200 and body["partial"] is True and body["missingNodes"] == ["n2"]
    finally:
        stopped.proc.send_signal(signal.SIGCONT)


def test_scope_is_validated_and_deep_cluster_pages_are_bounded(cluster: NodeCluster) -> None:
    wait_all_peers(cluster)
    node = cluster.nodes["n0"]
    status, body, _ = api(node, "/api/logs/search", scope="everywhere")
    assert status == 400 and body["code"] == "INVALID_PARAMETER" and body["error"].startswith("scope")
    status, body, _ = api(node, "/api/logs/search", offset=10_000, limit=50)
    assert status == 400 and body["error"].startswith("offset")
    status, body, _ = api(node, "/api/logs/search", scope="local", offset=10_000, limit=50)
    assert status == 200
