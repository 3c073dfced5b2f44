"""Reshard benchmark: 3 real nodes, N configs (default 10k) on a real etcd.

Prints the time for the cluster to converge (every config running on exactly one node) after: the initial
load, a node joining, a graceful leave (SIGTERM), a kill -9 (includes the lease TTL), and the duration of a
full reshard with nothing changed on each node. Configs are written straight into etcd in the config API's
format (the API's per-PUT uniqueness check is not what is measured here).

Run: ``python bench/reshard.py [--configs 10000] [--ttl 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from service.configapi.store import encode_value
from tests.cluster_harness import NodeCluster, config_body, instance_starts
from tests.etcd_server import EtcdServer


async def load_configs(endpoint: str, prefix: str, names: list[str]) -> None:
    from service.kv.etcd import EtcdKV

    kv = EtcdKV([endpoint], dial_timeout=5.0)
    await kv.start()
    try:
        limit = asyncio.Semaphore(64)

        async def put(name: str) -> None:
            async with limit:
                await kv.put(prefix + name, encode_value(f'name: "{name}"\n' + config_body(name)))

        await asyncio.gather(*(put(n) for n in names))
    finally:
        await kv.close()


def _events(log: str, msg: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in log.splitlines():
        if f'"{msg}"' not in line:
            continue
        record = json.loads(line)
        ts = datetime.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        out[record.get("instance", "")] = ts  # the latest one
    return out


def handoff_gaps(old: list[str], new: str, cluster: NodeCluster) -> list[float]:
    """Per moved config: the new node's start minus the old node's stop (from the nodes' logs, ms precision)."""
    stops: dict[str, float] = {}
    for nid in old:
        stops.update(_events(cluster.nodes[nid].log(), "instance stopped"))
    starts = _events(cluster.nodes[new].log(), "instance started")
    return sorted(starts[n] - stops[n] for n in starts if n in stops)


def converge(cluster: NodeCluster, names: list[str], timeout: float) -> float:
    return cluster.wait_exactly_once(names, timeout, what="convergence")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--ttl", type=float, default=4.0, help="membership lease TTL (s)")
    args = parser.parse_args()
    names = [f"bench-{i:05d}" for i in range(args.configs)]
    root = Path(tempfile.mkdtemp(prefix="bench-reshard-"))
    etcd = EtcdServer(root / "etcd")
    etcd.start()
    cluster = NodeCluster(root, etcd.endpoint, lease_ttl=f"{args.ttl:g}s", heartbeat="500ms",
                          reshard_interval="60s")
    figures: list[tuple[str, str]] = []
    try:
        cluster.add(3)
        started = time.monotonic()
        asyncio.run(load_configs(etcd.endpoint, f"{cluster.namespace}/configurations/", names))
        figures.append(("write configs to etcd", f"{time.monotonic() - started:.2f}s"))
        figures.append(("initial convergence (from first write)",
                        f"{converge(cluster, names, 300) + time.monotonic() - started:.2f}s"))

        for node_id, node in cluster.nodes.items():
            result = node.request("POST", "/agent/api/v1/cluster/reshard", timeout=60).json()["data"]
            figures.append((f"full reshard, nothing changed ({node_id}, {result['owned']} owned)",
                            f"{result['duration_seconds'] * 1000:.0f} ms (unchanged {result['unchanged']}, "
                            f"started {result['started']})"))

        before = cluster.running()
        starts = {nid: sum(instance_starts(n).values()) for nid, n in cluster.nodes.items()}
        started = time.monotonic()
        (joined,) = cluster.add(1, wait=False)
        cluster.wait_exactly_once(names, 120)
        took = time.monotonic() - started
        moved = len(cluster.running()[joined.node_id])  # type: ignore[attr-defined]
        restarted = sum(sum(instance_starts(cluster.nodes[nid]).values()) - starts[nid] for nid in before)
        figures.append(("join (process start included)",
                        f"{took:.2f}s, moved {moved} ({moved / len(names):.1%}, ideal 25%), "
                        f"restarts on old nodes {restarted}"))
        gaps = handoff_gaps(list(before), joined.node_id, cluster)  # type: ignore[attr-defined]
        if gaps:
            figures.append(("handoff gap on join (stop on old -> start on new)",
                            f"p50 {gaps[len(gaps) // 2] * 1000:.0f} ms, p99 {gaps[int(len(gaps) * 0.99)] * 1000:.0f}"
                            f" ms, max {gaps[-1] * 1000:.0f} ms over {len(gaps)} configs"))

        started = time.monotonic()
        cluster.remove("n0", signal.SIGTERM)
        after_exit = converge(cluster, names, 120)
        figures.append(("graceful leave (SIGTERM)", f"{time.monotonic() - started:.2f}s from SIGTERM "
                        f"({after_exit:.2f}s after the process exited)"))

        started = time.monotonic()
        cluster.remove("n1", signal.SIGKILL)
        took = converge(cluster, names, 120)
        figures.append(("kill -9", f"{took:.2f}s (lease TTL {args.ttl:g}s)"))
    finally:
        cluster.close()
        etcd.remove()
    print(f"reshard benchmark: 3 nodes, {args.configs} configs, real etcd")
    for label, value in figures:
        print(f"  {label:<55} {value}")


if __name__ == "__main__":
    main()
