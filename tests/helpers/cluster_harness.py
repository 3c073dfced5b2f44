"""Several real nodes sharing one KV store, with the short timings the cluster tests need."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers.node_process import NodeProcess, wait_for

INSTANCES = "/agent/api/v1/metrics/instances"
LEASE_TTL = 2.0  # seconds: the lease of the `cluster` fixture's nodes (tests/conftest.py)


def cluster_config(node_id: str, *, store: str = "etcd", etcd_endpoint: str = "", namespace: str = "t",
                   heartbeat: str = "250ms", lease_ttl: str = "2s", reshard_interval: str = "3s") -> str:
    """A node file; `namespace` keeps the config, ring and claim prefixes of one test apart from others."""
    lines = [
        "server:",
        "  log_level: info",
        "  log_format: json",
        "metrics:",
        "  wal_directory: data-agent",
        "  scraping_service:",
        "    enabled: true",
        f"    reshard_interval: {reshard_interval}",
        "    reshard_timeout: 30s",
        "    kvstore:",
        f"      store: {store}",
        f"      prefix: {namespace}/configurations/",
    ]
    if store == "etcd":
        lines += ["      etcd:", f"        endpoints: [{json.dumps(etcd_endpoint)}]", "        dial_timeout: 2s"]
    lines += [
        "    lifecycler:",
        f"      id: {node_id}",
        f"      heartbeat_period: {heartbeat}",
        f"      lease_ttl: {lease_ttl}",
        "      ring:",
        "        kvstore:",
        f"          prefix: {namespace}/collectors/",
    ]
    return "\n".join(lines) + "\n"


def config_body(name: str, extra: str = "") -> str:
    return f"scrape_configs:\n  - job_name: {name}\n    static_configs:\n      - targets: ['127.0.0.1:9']\n{extra}"


class NodeCluster:
    """Nodes named n0, n1, ... in `root`; every node is stopped by PID in close()."""

    def __init__(self, root: Path, etcd_endpoint: str, **timings: str) -> None:
        self.root = root
        self.etcd_endpoint = etcd_endpoint
        self.namespace = uuid.uuid4().hex[:8]
        self.timings = timings
        self.nodes: dict[str, NodeProcess] = {}
        self._counter = 0

    def add(self, count: int = 1, wait: bool = True, extra: str = "") -> list[NodeProcess]:
        """Start `count` nodes; `extra` is appended to each node file (e.g. a `logs:` block)."""
        new = []
        for _ in range(count):
            node_id = f"n{self._counter}"
            self._counter += 1
            text = cluster_config(node_id, etcd_endpoint=self.etcd_endpoint, namespace=self.namespace,
                                  **self.timings) + extra
            node = NodeProcess(self.root / node_id, text)
            node.node_id = node_id  # type: ignore[attr-defined]
            self.nodes[node_id] = node
            node.start(wait_ready=False)
            new.append(node)
        if wait:
            for node in new:
                node.wait_ready(30)
        return new

    def remove(self, node_id: str, sig: int = signal.SIGTERM) -> NodeProcess:
        node = self.nodes.pop(node_id)
        node.stop(sig)
        return node

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def put(self, names: list[str], extra: str = "", via: NodeProcess | None = None) -> None:
        node = via or next(iter(self.nodes.values()))
        for name in names:
            resp = node.request("PUT", f"/agent/api/v1/config/{name}", config_body(name, extra))
            assert resp.status in (200, 201), resp.text

    def running(self) -> dict[str, list[str]]:
        """Every node's running set, polled concurrently (one moment, as near as HTTP allows)."""
        items = list(self.nodes.items())
        for node_id, node in items:  # a dead node is a failure to report, not a "not yet" to poll past
            if node.proc is not None and node.proc.poll() is not None:
                tail = "\n".join(node.log().splitlines()[-40:])
                raise AssertionError(f"node {node_id} exited with {node.proc.returncode}:\n{tail}")
        with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
            sets = list(pool.map(lambda kv: kv[1].get(INSTANCES, timeout=5).json()["data"], items))
        return {node_id: s for (node_id, _), s in zip(items, sets, strict=True)}

    @staticmethod
    def duplicates(running: dict[str, list[str]]) -> list[str]:
        counts = Counter(n for names in running.values() for n in names)
        return sorted(n for n, c in counts.items() if c > 1)

    def exactly_once(self, names: list[str]) -> bool:
        """Every config runs on exactly one node, and that node is its owner (no handoff under way)."""
        running = self.running()
        flat = [n for names_ in running.values() for n in names_]
        if len(flat) != len(set(flat)) or set(flat) != set(names):
            return False
        ring = next(iter(self.nodes.values())).get("/agent/api/v1/cluster/ring", timeout=10).json()["data"]
        sets = {nid: set(names_) for nid, names_ in running.items()}
        return len(ring["members"]) == len(self.nodes) and all(m["state"] == "ACTIVE" for m in ring["members"]) and all(
            c["name"] in sets.get(c["owner"], ()) for c in ring["configs"])

    def wait_exactly_once(self, names: list[str], timeout: float, what: str = "every config on one node") -> float:
        import time

        started = time.monotonic()
        wait_for(lambda: self.exactly_once(names), timeout, interval=0.05, what=what)
        return time.monotonic() - started


def instance_starts(node: NodeProcess) -> Counter[str]:
    """How many times each instance started on this node (from its JSON log)."""
    counts: Counter[str] = Counter()
    for line in node.log().splitlines():
        if '"instance started"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        counts[record.get("instance", "")] += 1
    return counts
