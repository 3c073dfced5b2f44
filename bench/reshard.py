"""Reshard benchmark: 3 real nodes, N configs (default 10k) on a real etcd, real instances.

Reports every row of the cluster goals table (docs/benchmarks.md, Resharding):

- initial convergence: from the first config written until every config runs on exactly one node;
- a full reshard with nothing changed, per node;
- a join: the time to converge, what moved, and the handoff gap per moved config (the old owner's
  ``instance halted`` → the new owner's ``instance started``, both read from the nodes' own JSON logs);
- a graceful leave (SIGTERM → every config running elsewhere) and its handoff gaps;
- kill -9 → every config running elsewhere, also measured from the moment etcd deleted the dead node's
  record (the lease expired);
- a graceful leave while the remote_write endpoints are unreachable: the largest scrape gap of a moved config,
  seen at the target (a loopback HTTP server that records when each config scrapes it);
- a deleted config whose remote is unreachable: how long until the next config on the same node starts;
- the RSS per idle instance and the CPU per instance start (whole node: parse, claim and start).

Configs are written straight into etcd in the config API's format (the API's per-PUT uniqueness check is not
what is measured here). Run: ``python bench/reshard.py [--configs 10000] [--ttl 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import http.server
import itertools
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from service.cluster.ring import Ring
from service.configapi.store import encode_value
from tests.helpers.cluster_harness import NodeCluster, config_body, instance_starts
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, log_records, wait_for
from tests.helpers.ports import free_port

SCRAPE_INTERVAL = 1.0  # of the configs the stuck-remote rows scrape with
STUCK_REMOTE = "remote_write:\n  - url: http://127.0.0.1:1/api/v1/write\n"


# --- timing helpers (unit-checked in tests/test_cluster_bench.py) -------------------------------------------

def since(started: float, wait: Callable[[], object], clock: Callable[[], float] = time.monotonic) -> float:
    """Seconds from `started` until `wait()` returned: whatever ran before the wait, plus the wait, once."""
    wait()
    return clock() - started


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p99, max) of `values` (nearest rank); raises ValueError when empty."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered) - 1e-9) - 1))]

    return rank(0.50), rank(0.99), ordered[-1]


def largest_gap(times: Sequence[float]) -> float:
    """The largest interval between consecutive times (0 with fewer than two)."""
    ordered = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


# --- the nodes' own events ------------------------------------------------------------------------------

def events(log: str, msg: str) -> dict[str, float]:
    """instance → unix time of its latest `msg` line in a node's JSON log."""
    return {str(r.get("instance", "")): r["at"] for r in log_records(log, msg)}


def handoff_gaps(old: Sequence[NodeProcess], new: Sequence[NodeProcess], moved: set[str],
                 after: float) -> list[float]:
    """Per moved config: its start on a new node minus its halt on an old node (events after `after`)."""
    halts: dict[str, float] = {}
    for node in old:
        halts.update({n: t for n, t in events(node.log(), "instance halted").items() if t >= after})
    gaps = []
    for node in new:
        for name, t in events(node.log(), "instance started").items():
            if name in moved and name in halts and t >= after:
                gaps.append(t - halts[name])
    return gaps


def gap_row(gaps: list[float], moved: int) -> str:
    if not gaps:
        return f"no gaps found (moved {moved})"
    p50, p99, top = percentiles(gaps)
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {top * 1000:.0f} ms over {len(gaps)} of {moved}"


# --- processes --------------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signal_leave(cluster: NodeCluster, node_id: str, sig: int) -> NodeProcess:
    """Signal a node and take it out of the cluster's view at once (its exit is waited for later)."""
    node = cluster.nodes.pop(node_id)
    os.kill(node.pid, sig)
    return node


class KeyDeletions:
    """Watches a prefix in etcd from a thread and records when each key under it was deleted (unix time)."""

    def __init__(self, endpoint: str, prefix: str) -> None:
        self.endpoint, self.prefix = endpoint, prefix
        self.deleted: dict[str, float] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._watch(),), daemon=True)
        self._ready = threading.Event()

    async def _watch(self) -> None:
        from service.kv.etcd import EtcdKV
        from service.kv.store import EventType

        kv = EtcdKV([self.endpoint], dial_timeout=5.0)
        await kv.start()
        self._ready.set()
        try:
            async for event in kv.watch(self.prefix):
                if event.type is EventType.DELETE:
                    self.deleted[event.key[len(self.prefix):]] = time.time()
        finally:
            await kv.close()

    def start(self) -> KeyDeletions:
        self._thread.start()
        self._ready.wait(10)
        return self


class ScrapeRecorder:
    """A loopback target: `/m/<config>` answers one gauge and records when each config scraped it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.times: dict[str, list[float]] = defaultdict(list)
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.times[self.path.rsplit("/", 1)[-1]].append(time.monotonic())
                body = b"# TYPE bench_up gauge\nbench_up 1\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def config(self, name: str) -> str:
        return (f"scrape_configs:\n  - job_name: {name}\n    scrape_interval: {SCRAPE_INTERVAL:g}s\n"
                f"    metrics_path: /m/{name}\n    static_configs:\n      - targets: ['127.0.0.1:{self.port}']\n"
                + STUCK_REMOTE)

    def close(self) -> None:
        self.server.shutdown()


async def load_configs(endpoint: str, prefix: str, bodies: dict[str, str]) -> None:
    """Write the configs MAX_TXN_OPS per transaction (a bulk import; 8 transactions in flight): one put per
    config took 25-30 s for 10k on a loaded machine (an fsync each), longer than the convergence measured."""
    from service.kv.etcd import EtcdKV
    from service.kv.store import MAX_TXN_OPS

    kv = EtcdKV([endpoint], dial_timeout=5.0, request_timeout=30.0)
    await kv.start()
    try:
        limit = asyncio.Semaphore(8)
        items = [(prefix + n, encode_value(f'name: "{n}"\n' + b)) for n, b in bodies.items()]

        async def put(chunk: list[tuple[str, bytes]]) -> None:
            async with limit:
                if not await kv.compare_and_swap_many([(k, v, 0) for k, v in chunk]):
                    for key, value in chunk:  # some existed already: write one by one
                        await kv.put(key, value)

        await asyncio.gather(*(put(items[i:i + MAX_TXN_OPS]) for i in range(0, len(items), MAX_TXN_OPS)))
    finally:
        await kv.close()


async def delete_config(endpoint: str, key: str) -> None:
    from service.kv.etcd import EtcdKV

    kv = EtcdKV([endpoint], dial_timeout=5.0)
    await kv.start()
    try:
        await kv.delete(key)
    finally:
        await kv.close()


def converge(cluster: NodeCluster, names: list[str], timeout: float) -> None:
    cluster.wait_exactly_once(names, timeout, what="convergence")


def owners(cluster: NodeCluster) -> dict[str, str]:
    return {n: nid for nid, names in cluster.running().items() for n in names}


def forced_reshard(node: NodeProcess) -> dict[str, object]:
    """POST /cluster/reshard; asked again when a node whose loop stalled past the server's header timeout
    (a loaded 2-core machine) closed the connection unanswered."""
    for _ in range(5):
        try:
            resp = node.request("POST", "/agent/api/v1/cluster/reshard", timeout=120)
        except (http.client.RemoteDisconnected, ConnectionError):
            time.sleep(2)
            continue
        data = resp.json().get("data")
        return data if isinstance(data, dict) else {"error": resp.text[:200]}
    return {"error": "no answer (dropped 5 times)"}


# --- the run ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--ttl", type=float, default=4.0, help="membership lease TTL (s)")
    parser.add_argument("--stuck", type=int, default=30, help="configs with an unreachable remote_write")
    args = parser.parse_args()
    names = [f"bench-{i:05d}" for i in range(args.configs)]
    root = Path(tempfile.mkdtemp(prefix="bench-reshard-"))
    etcd = EtcdServer(root / "etcd")
    etcd.start()
    recorder = ScrapeRecorder()
    cluster = NodeCluster(root, etcd.endpoint, lease_ttl=f"{args.ttl:g}s", heartbeat="500ms",
                          reshard_interval="60s")
    ring_deletions = KeyDeletions(etcd.endpoint, f"{cluster.namespace}/collectors/").start()
    figures = Figures()
    gone: list[NodeProcess] = []
    try:
        cluster.add(3)
        idle_rss = {nid: rss_kib(n.pid) for nid, n in cluster.nodes.items()}
        cpu_before = {nid: cpu_seconds(n.pid) for nid, n in cluster.nodes.items()}
        started = time.monotonic()
        asyncio.run(load_configs(etcd.endpoint, f"{cluster.namespace}/configurations/",
                                 {n: config_body(n) for n in names}))
        written = time.monotonic() - started
        figures.append(("write configs to etcd (128 per transaction)", f"{written:.2f}s"))
        took = since(started, lambda: converge(cluster, names, 300))
        figures.append(("initial convergence (from the first write)",
                        f"{took:.2f}s ({took - written:.2f}s after the last write)"))
        running = cluster.running()
        per_instance_rss = [(rss_kib(n.pid) - idle_rss[nid]) / max(1, len(running[nid]))
                            for nid, n in cluster.nodes.items()]
        per_start_cpu = [(cpu_seconds(n.pid) - cpu_before[nid]) / max(1, len(running[nid]))
                         for nid, n in cluster.nodes.items()]
        figures.append(("RSS per idle instance (node RSS growth / instances)",
                        ", ".join(f"{v:.0f} KiB" for v in per_instance_rss)))
        figures.append(("CPU per instance start (whole node: parse, claim, start)",
                        ", ".join(f"{v * 1000:.2f} ms" for v in per_start_cpu)))

        for node_id, node in cluster.nodes.items():
            result = forced_reshard(node)
            if "duration_seconds" not in result:
                figures.append((f"full reshard, nothing changed ({node_id})", f"failed: {result}"))
                continue
            figures.append((f"full reshard, nothing changed ({node_id}, {result['owned']} owned)",
                            f"{result['duration_seconds'] * 1000:.0f} ms (unchanged {result['unchanged']}, "
                            f"started {result['started']})"))

        # a join
        before = cluster.running()
        old_nodes = list(cluster.nodes.values())
        starts = {nid: sum(instance_starts(n).values()) for nid, n in cluster.nodes.items()}
        mark = time.time()
        started = time.monotonic()
        (joined,) = cluster.add(1, wait=False)
        took = since(started, lambda: converge(cluster, names, 120))
        moved = set(cluster.running()[joined.node_id])  # type: ignore[attr-defined]
        restarted = sum(sum(instance_starts(cluster.nodes[nid]).values()) - starts[nid] for nid in before)
        figures.append(("join (process start included)",
                        f"{took:.2f}s, moved {len(moved)} ({len(moved) / len(names):.1%}, ideal 25%), "
                        f"restarts on old nodes {restarted}"))
        figures.append(("handoff gap on join (halt on old -> start on new)",
                        gap_row(handoff_gaps(old_nodes, [joined], moved, mark), len(moved))))

        # a graceful leave
        leaving = cluster.nodes["n0"]
        moved = set(cluster.running()["n0"])
        mark = time.time()
        started = time.monotonic()
        gone.append(signal_leave(cluster, "n0", signal.SIGTERM))
        took = since(started, lambda: converge(cluster, names, 120))
        figures.append(("graceful leave (SIGTERM -> every config running elsewhere)", f"{took:.2f}s"))
        figures.append(("handoff gap on leave (halt on leaver -> start on new)",
                        gap_row(handoff_gaps([leaving], list(cluster.nodes.values()), moved, mark), len(moved))))
        leaving.stop(signal.SIGTERM, timeout=60)

        # kill -9
        started = time.monotonic()
        killed_at = time.time()
        gone.append(signal_leave(cluster, "n1", signal.SIGKILL))
        took = since(started, lambda: converge(cluster, names, 120))
        done_at = time.time()
        expired = ring_deletions.deleted.get("n1")
        after_expiry = f"{done_at - expired:.2f}s after etcd deleted its record" if expired else "expiry not seen"
        figures.append(("kill -9 -> every config running elsewhere",
                        f"{took:.2f}s (lease TTL {args.ttl:g}s; {after_expiry}, "
                        f"{expired - killed_at:.2f}s after the kill)" if expired else f"{took:.2f}s ({after_expiry})"))

        # stuck remotes: a graceful leave, and a delete
        stuck = [f"stuck-{i:02d}" for i in range(args.stuck)]
        asyncio.run(load_configs(etcd.endpoint, f"{cluster.namespace}/configurations/",
                                 {n: recorder.config(n) for n in stuck}))
        converge(cluster, names + stuck, 120)
        wait_for(lambda: all(len(recorder.times[n]) >= 2 for n in stuck), 30, what="every stuck config scraped")
        where = owners(cluster)
        leaver = max(cluster.nodes, key=lambda nid: sum(1 for n in stuck if where.get(n) == nid))
        moved = {n for n in stuck if where.get(n) == leaver}
        leaving_node = signal_leave(cluster, leaver, signal.SIGTERM)
        gone.append(leaving_node)
        converge(cluster, names + stuck, 120)
        settle = time.monotonic() + 3 * SCRAPE_INTERVAL
        wait_for(lambda: time.monotonic() > settle, 10, what="a few scrapes on the new owner")
        worst = max(largest_gap(recorder.times[n]) for n in moved)
        figures.append(("graceful leave, remotes unreachable: largest scrape gap of a moved config",
                        f"{worst:.2f}s (scrape interval {SCRAPE_INTERVAL:g}s, {len(moved)} moved)"))

        node_id, node = next(iter(cluster.nodes.items()))
        ring = Ring(cluster.nodes)
        doomed = next(f"stuck-del-{i}" for i in range(1000) if ring.owner(f"stuck-del-{i}") == node_id)
        follower = next(f"after-del-{i}" for i in range(1000) if ring.owner(f"after-del-{i}") == node_id)
        prefix = f"{cluster.namespace}/configurations/"
        asyncio.run(load_configs(etcd.endpoint, prefix, {doomed: recorder.config(doomed)}))
        wait_for(lambda: len(recorder.times[doomed]) >= 2, 60, what="the doomed config scraped")
        asyncio.run(delete_config(etcd.endpoint, prefix + doomed))
        started = time.monotonic()
        asyncio.run(load_configs(etcd.endpoint, prefix, {follower: config_body(follower)}))
        took = since(started, lambda: wait_for(lambda: follower in node.get("/agent/api/v1/metrics/instances")
                                                .json()["data"], 120, what="the next config"))
        figures.append(("a deleted config with an unreachable remote: next config on that node starts after",
                        f"{took:.2f}s"))
    finally:
        for node in gone:
            node.stop(signal.SIGKILL)
        cluster.close()
        recorder.close()
        etcd.remove()
    print(f"reshard benchmark: 3 nodes, {args.configs} configs, real etcd, lease TTL {args.ttl:g}s")
    for label, value in figures:
        print(f"  {label:<85} {value}")


class Figures(list[tuple[str, str]]):
    """The result rows, each also printed (to stderr) as soon as it is measured: a late failure keeps them."""

    def append(self, row: tuple[str, str]) -> None:
        super().append(row)
        print(f"  {row[0]:<85} {row[1]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
