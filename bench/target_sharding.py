"""Per-target sharding benchmark: one `sharding: targets` config of N loopback targets (default 3000), scraped
by one node, then by three nodes of the same cluster on a real etcd.

Reports, for each phase, how many targets each node scrapes (its targets API), the scrapes the targets saw
per second, and each node's CPU seconds per wall second over the same window (utime + stime from
/proc/<pid>/stat): the three nodes' CPU each against the one node doing all of it, as measured and above
the CPU of an idle node (heartbeats, watches), which every node pays whatever it scrapes. The config has no
remote_write (scrape, encode, WAL append and fsync are what is measured).

Run: ``python bench/target_sharding.py [--targets 3000] [--series 10] [--interval 10] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import wait_for
from tests.helpers.sharding_targets import ManyTargets


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def config(targets: ManyTargets, interval: float) -> str:
    return (f"sharding: targets\nscrape_configs:\n  - job_name: big\n    scrape_interval: {interval:g}s\n"
            f"    static_configs:\n{targets.static_configs()}")


def shares(cluster: NodeCluster) -> dict[str, int]:
    return {nid: len(node.get("/agent/api/v1/metrics/targets", timeout=30).json()["data"])
            for nid, node in cluster.nodes.items()}


def idle_cpu(cluster: NodeCluster, seconds: float) -> float:
    """CPU seconds per second of a node running nothing (heartbeats, watches, reshard timer)."""
    (node,) = cluster.nodes.values()
    cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)


def measure(cluster: NodeCluster, targets: ManyTargets, total: int, interval: float, seconds: float
            ) -> dict[str, object]:
    """Wait until the nodes' shares add up to every target and a full interval passed, then measure."""
    wait_for(lambda: sum(shares(cluster).values()) == total and all(shares(cluster).values()), 120,
             interval=1.0, what="every target scraped by exactly one node")
    time.sleep(2 * interval + 3)  # every loop past its first scrape, every handoff done
    pids = {nid: node.pid for nid, node in cluster.nodes.items()}
    cpu0 = {nid: cpu_seconds(pid) for nid, pid in pids.items()}
    scrapes0, t0 = targets.total(), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = {nid: (cpu_seconds(pid) - cpu0[nid]) / wall for nid, pid in pids.items()}
    return {"targets": shares(cluster), "cpu": cpu, "scrapes_per_s": (targets.total() - scrapes0) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=3000)
    parser.add_argument("--series", type=int, default=10, help="series per target page")
    parser.add_argument("--interval", type=float, default=10.0, help="scrape interval, seconds")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-target-sharding-") as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        etcd.start()
        targets = ManyTargets(args.targets, args.series, identify=False).start()
        cluster = NodeCluster(root, etcd.endpoint, lease_ttl="5s", heartbeat="1s", reshard_interval="30s")
        try:
            (n0,) = cluster.add(1)
            idle = idle_cpu(cluster, min(args.seconds, 15.0))
            resp = n0.request("PUT", "/agent/api/v1/config/big", config(targets, args.interval), timeout=60)
            assert resp.status in (200, 201), resp.text
            one = measure(cluster, targets, args.targets, args.interval, args.seconds)
            cluster.add(2)
            three = measure(cluster, targets, args.targets, args.interval, args.seconds)
        finally:
            cluster.close()
            targets.stop()
            etcd.remove()

    expected = args.targets / args.interval
    print(f"{args.targets} targets x {args.series} series every {args.interval:g}s "
          f"({expected:.0f} scrapes/s), {args.seconds:g}s windows")
    for name, phase in (("1 node", one), ("3 nodes", three)):
        cpu: dict[str, float] = phase["cpu"]  # type: ignore[assignment]
        split: dict[str, int] = phase["targets"]  # type: ignore[assignment]
        rows = ", ".join(f"{nid}: {split[nid]} targets, {cpu[nid]:.3f} CPU s/s" for nid in sorted(cpu))
        print(f"{name}: {rows}; targets saw {phase['scrapes_per_s']:.0f} scrapes/s")
    base = one["cpu"]["n0"]  # type: ignore[index]
    per_node: dict[str, float] = three["cpu"]  # type: ignore[assignment]
    print(f"idle node (no config): {idle:.3f} CPU s/s")
    print("CPU per node / one node doing all of it: "
          + ", ".join(f"{nid} {c / base:.2f}" for nid, c in sorted(per_node.items())))
    print("the same above the idle node's CPU: "
          + ", ".join(f"{nid} {(c - idle) / (base - idle):.2f}" for nid, c in sorted(per_node.items())))


if __name__ == "__main__":
    main()
