"""Scale run: as many nodes as fit (default 10) on one real etcd, many small configs (default 100k) whose
targets are loopback.

Reports: writing the configs, convergence (every config on exactly one node, its owner), one full reshard
per node with nothing changed, etcd requests/s and bytes/s per phase (from etcd's own /metrics), etcd's
database size, RSS per node, and the movement and time when one node joins and when one leaves (SIGTERM).

Every config scrapes one shared loopback target (a tiny HTTP server in this process) every
``--scrape-interval`` (default 10m, so scraping stays a small part of the load). Configs are written
straight into etcd in the config API's format. Run: ``python bench/scale.py [--nodes 10] [--configs 100000]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import http.server
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.reshard import Figures, load_configs, rss_kib, signal_leave
from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.ports import free_port

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+)$")


def etcd_counters(endpoint: str) -> dict[str, float]:
    """Sums over label sets of etcd's request and traffic counters, and its database size."""
    wanted = {"grpc_server_handled_total": "requests", "etcd_network_client_grpc_received_bytes_total": "rx",
              "etcd_network_client_grpc_sent_bytes_total": "tx", "etcd_mvcc_db_total_size_in_bytes": "db",
              "etcd_debugging_mvcc_keys_total": "keys"}
    out = dict.fromkeys(wanted.values(), 0.0)
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            match = _SAMPLE.match(line)
            if match and match.group(1) in wanted:
                out[wanted[match.group(1)]] += float(match.group(3))
    return out


class Phase:
    """etcd's counters and the wall time over one phase."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.start = etcd_counters(endpoint)
        self.t0 = time.monotonic()

    def row(self) -> str:
        end = etcd_counters(self.endpoint)
        took = max(time.monotonic() - self.t0, 1e-9)
        req = end["requests"] - self.start["requests"]
        rx = end["rx"] - self.start["rx"]
        tx = end["tx"] - self.start["tx"]
        return (f"{req / took:.0f} req/s, in {rx / took / 1024:.0f} KiB/s, out {tx / took / 1024:.0f} KiB/s "
                f"over {took:.1f}s ({req:.0f} requests)")


class Target:
    """One loopback target all configs scrape."""

    def __init__(self) -> None:
        self.port = free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"# TYPE scale_up gauge\nscale_up 1\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a scraper gave up
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def body(self, name: str, interval: str) -> str:
        return (f"scrape_configs:\n  - job_name: {name}\n    scrape_interval: {interval}\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{self.port}']\n")


def running(cluster: NodeCluster) -> dict[str, set[str]]:
    return {nid: set(names) for nid, names in cluster.running().items()}


def converged(cluster: NodeCluster, total: int) -> Callable[[], bool]:
    """Every config runs exactly once (counted over the nodes' instance lists, not the 100k-row ring API)."""
    def check() -> bool:
        sets = running(cluster)
        return sum(len(s) for s in sets.values()) == total and len(set().union(*sets.values())) == total
    return check


def moved(before: dict[str, set[str]], after: dict[str, set[str]]) -> int:
    owner = {n: nid for nid, names in before.items() for n in names}
    return sum(1 for nid, names in after.items() for n in names if owner.get(n) != nid)


def reshard_once(node: NodeProcess) -> str:
    """One forced reshard's duration, or why there is none. A node whose event loop stalls past the server's
    10 s header timeout (a 2-core machine at load 30 starting thousands of instances) closes the connection
    unanswered: asked again, as a client would."""
    for attempt in range(5):
        try:
            resp = node.request("POST", "/agent/api/v1/cluster/reshard", timeout=300)
        except (http.client.RemoteDisconnected, ConnectionError) as exc:
            print(f"  (reshard request to {node.port} dropped: {exc!r}; attempt {attempt + 1})", file=sys.stderr)
            time.sleep(2)
            continue
        data = resp.json().get("data") if resp.status == 200 else None
        if isinstance(data, dict) and data.get("ok"):
            return f"{data['duration_seconds'] * 1000:.0f} ms"
        return f"failed ({resp.status}: {resp.text[:120]})"
    return "no answer (dropped 5 times)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--configs", type=int, default=100_000)
    parser.add_argument("--scrape-interval", default="10m")
    parser.add_argument("--ttl", type=float, default=10.0, help="membership lease TTL (s)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per convergence wait (s)")
    args = parser.parse_args()
    names = [f"s-{i:06d}" for i in range(args.configs)]
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    etcd = EtcdServer(root / "etcd", extra_args=["--quota-backend-bytes", str(8 * 1024 ** 3),
                                                 "--auto-compaction-mode", "periodic",
                                                 "--auto-compaction-retention", "5m"])
    etcd.start()
    target = Target()
    cluster = NodeCluster(root, etcd.endpoint, lease_ttl=f"{args.ttl:g}s", heartbeat="1s",
                          reshard_interval="5m")
    figures = Figures()
    gone = []
    try:
        for node in cluster.add(args.nodes, wait=False):  # ten interpreters importing at once: be patient
            node.wait_ready(600)
        idle = {nid: rss_kib(n.pid) for nid, n in cluster.nodes.items()}
        figures.append(("nodes started (idle RSS per node)",
                        f"{args.nodes}, {min(idle.values()) / 1024:.0f}-{max(idle.values()) / 1024:.0f} MiB"))
        phase = Phase(etcd.endpoint)
        asyncio.run(load_configs(etcd.endpoint, f"{cluster.namespace}/configurations/",
                                 {n: target.body(n, args.scrape_interval) for n in names}))
        figures.append((f"write {args.configs} configs to etcd", f"{time.monotonic() - phase.t0:.1f}s"))
        wait_for(converged(cluster, args.configs), args.timeout, interval=1.0, what="convergence")
        figures.append(("convergence (from the first write)", f"{time.monotonic() - phase.t0:.1f}s"))
        figures.append(("etcd during write + convergence", phase.row()))
        db = etcd_counters(etcd.endpoint)
        figures.append(("etcd database", f"{db['db'] / 1024 ** 2:.0f} MiB, {db['keys']:.0f} keys "
                                         f"({db['db'] / max(1, args.configs):.0f} bytes per config, claims included)"))
        rss = {nid: rss_kib(n.pid) for nid, n in cluster.nodes.items()}
        growth = sum(rss[n] - idle[n] for n in rss) / args.configs
        figures.append(("RSS per node (converged)", f"{min(rss.values()) / 1024:.0f}-{max(rss.values()) / 1024:.0f} "
                                                    f"MiB; per instance {growth:.0f} KiB"))

        phase = Phase(etcd.endpoint)
        time.sleep(20)  # a measurement window, not a wait for anything
        figures.append(("etcd at rest (heartbeats only), 20 s", phase.row()))

        durations = []
        for node in cluster.nodes.values():
            durations.append(reshard_once(node))
        figures.append(("one full reshard, nothing changed (per node)", ", ".join(durations)))

        before = running(cluster)
        phase = Phase(etcd.endpoint)
        (joiner,) = cluster.add(1, wait=False)
        joiner.wait_ready(600)
        wait_for(lambda: converged(cluster, args.configs)() and all(running(cluster).values()), args.timeout,
                 interval=1.0, what="join converged")
        after = running(cluster)
        count = moved(before, after)
        figures.append(("one node joins (process start included)",
                        f"{time.monotonic() - phase.t0:.1f}s, moved {count} ({count / args.configs:.1%}, ideal "
                        f"{1 / (args.nodes + 1):.1%})"))
        figures.append(("etcd during the join", phase.row()))

        before = after
        leaver = sorted(cluster.nodes)[0]
        phase = Phase(etcd.endpoint)
        gone.append(signal_leave(cluster, leaver, signal.SIGTERM))
        wait_for(converged(cluster, args.configs), args.timeout, interval=1.0, what="leave converged")
        after = running(cluster)
        count = moved({k: v for k, v in before.items() if k != leaver}, after)
        figures.append(("one node leaves (SIGTERM)",
                        f"{time.monotonic() - phase.t0:.1f}s, moved {count} ({count / args.configs:.1%}; "
                        f"the leaver ran {len(before[leaver])})"))
        figures.append(("etcd during the leave", phase.row()))
    finally:
        for node in gone:
            node.stop(signal.SIGKILL)
        cluster.close()
        target.server.shutdown()
        etcd.remove()
    print(f"scale run: {args.nodes} nodes, {args.configs} configs, one real etcd, lease TTL {args.ttl:g}s, "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, value in figures:
        print(f"  {label:<60} {value}")


if __name__ == "__main__":
    main()
