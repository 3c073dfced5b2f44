"""Cluster-wide log search cost: the bench's queries over 3 nodes x N entries (asked of one node, which fans
out) against one node x N entries (the same node with `scope=local`), through the real HTTP API.

    python bench/log_search_cluster.py [--entries-per-node 1000000] [--runs 20] [--nodes 3]

Real etcd and real node processes on loopback; each node receives its own N entries by Loki JSON push over
24 h (20 containers), and the bench waits until every node's store holds them all before timing anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from log_search import pct, push_bodies

from tests.helpers.cluster_harness import cluster_config
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, request, wait_for

LOGS = """logs:
  positions_directory: positions
  configs:
    - name: default
      search: {retention: 3650d, max_size: 64GiB, peer_timeout: 10s}
"""


def queries(now_ms: int) -> dict[str, tuple[str, dict[str, object]]]:
    hour, day = now_ms - 3_600_000, now_ms - 86_400_000
    return {
        "search: newest 50, all": ("/api/logs/search", {"limit": 50}),
        "search: word 'payment'": ("/api/logs/search", {"query": "payment"}),
        "search: 2 words 'fatal upstream'": ("/api/logs/search", {"query": "fatal upstream"}),
        "search: container svc-03, last hour": ("/api/logs/search", {"container": "svc-03", "fromTimestamp": hour,
                                                                      "toTimestamp": now_ms}),
        "search: 'error' + container, last hour": ("/api/logs/search", {"query": "error", "container": "svc-05",
                                                                         "fromTimestamp": hour,
                                                                         "toTimestamp": now_ms}),
        "search: stream stderr, page 20": ("/api/logs/search", {"stream": "stderr", "offset": 1000}),
        "histogram: last hour": ("/api/logs/histogram", {"fromTimestamp": hour, "toTimestamp": now_ms}),
        "histogram: 24h, all": ("/api/logs/histogram", {"fromTimestamp": day, "toTimestamp": now_ms}),
        "histogram: 24h, word 'error'": ("/api/logs/histogram", {"query": "error", "fromTimestamp": day,
                                                                 "toTimestamp": now_ms}),
        "containers": ("/api/logs/containers", {}),
    }


def fill(node: NodeProcess, bodies: list[bytes], threads: int = 4) -> None:
    def send(body: bytes) -> None:
        resp = request(node.port, "POST", "/loki/api/v1/push", body, {"Content-Type": "application/json"},
                       timeout=120)
        assert resp.status == 204, resp.text

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, bodies))


def local_total(node: NodeProcess) -> int:
    return request(node.port, "GET", "/api/logs/search?scope=local&limit=1").json()["data"]["total"]


def measure(node: NodeProcess, path: str, params: dict[str, object], runs: int) -> tuple[float, float, bool]:
    times, partial = [], False
    query = urlencode({k: str(v) for k, v in params.items()})
    for _ in range(runs):
        started = time.perf_counter()
        resp = request(node.port, "GET", f"{path}?{query}", timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status == 200, resp.text
        body = resp.json()
        partial |= bool(body.get("partial") or (isinstance(body["data"], dict) and body["data"].get("partial")))
    return statistics.median(times), pct(times, 95), partial


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries-per-node", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="log-search-cluster-"))
    etcd = EtcdServer(root / "etcd")
    etcd.start()
    nodes = []
    try:
        for i in range(args.nodes):
            text = cluster_config(f"n{i}", etcd_endpoint=etcd.endpoint, namespace="bench") + LOGS
            nodes.append(NodeProcess(root / f"n{i}", text).start(wait_ready=False))
        for node in nodes:
            node.wait_ready(60)
        now_ms = int(time.time() * 1000)
        print(f"pushing {args.entries_per_node:,} entries to each of {args.nodes} nodes ...", flush=True)
        bodies = push_bodies(args.entries_per_node, now_ms - 86_400_000, 86_400_000)
        started = time.perf_counter()
        for node in nodes:
            fill(node, bodies)
        for node in nodes:
            wait_for(lambda n=node: local_total(n) == args.entries_per_node, timeout=3600, interval=1.0,
                     what="the store holds every pushed entry")
        print(f"pushed and indexed in {time.perf_counter() - started:.0f} s", flush=True)
        asker = nodes[0]
        wait_for(lambda: json.loads(request(asker.port, "GET", "/api/logs/search?limit=1").body)["data"]
                 .get("partial") is False, timeout=60, what="the asking node sees every peer")
        print(f"{'query':42} {'1 node p50/p95 ms':>20} {f'{args.nodes} nodes p50/p95 ms':>22} {'p95 ratio':>10}")
        for name, (path, params) in queries(now_ms).items():
            l50, l95, _ = measure(asker, path, {**params, "scope": "local"}, args.runs)
            c50, c95, partial = measure(asker, path, params, args.runs)
            flag = "  PARTIAL" if partial else ""
            print(f"{name:42} {l50:9.1f} / {l95:7.1f}   {c50:9.1f} / {c95:7.1f}   {c95 / l95:9.2f}x{flag}")
    finally:
        for node in nodes:
            node.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
