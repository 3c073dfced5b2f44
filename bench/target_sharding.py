"""Per-target sharding benchmark: one `sharding: targets` config of N loopback targets (default 3000), scraped
by one node, then by three nodes of the same cluster on a real etcd.

Reports, for each phase, how many targets each node scrapes (its targets API), the scrapes the targets saw
per second, and each node's CPU seconds per wall second over the same window (utime + stime from
/proc/<pid>/stat): the three nodes' CPU each against the one node doing all of it, as measured and above
the CPU of an idle node (heartbeats, watches), which every node pays whatever it scrapes. The config has no
remote_write (scrape, encode, WAL append and fsync are what is measured).

Run: ``python bench/target_sharding.py [--targets 3000] [--series 10] [--interval 10] [--seconds 30]``
With ``--profile DIR`` (needs py-spy: ``pip install -e .[bench]``) it also samples one node of each phase
during its window with ``py-spy record --nonblocking --gil`` (only samples holding the GIL: CPU in Python
code and in uvloop) and writes collapsed stacks and a summary (top frames by own and by total samples) to
DIR; py-spy takes CPU of its own, so compare figures from runs without it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
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


def wakeups(pid: int) -> int:
    """Context switches of the node's main thread (its event loop): about one per loop wakeup."""
    with open(f"/proc/{pid}/status") as fh:
        return sum(int(line.split()[1]) for line in fh if "ctxt_switches:" in line)


def config(targets: ManyTargets, interval: float, count: int | None = None) -> str:
    """The sharded config of every target, or of the first `count` (the reference phase)."""
    groups = targets.static_configs()
    if count is not None:
        groups = "".join(groups.splitlines(keepends=True)[:2 * count])  # two lines per target
    return (f"sharding: targets\nscrape_configs:\n  - job_name: big\n    scrape_interval: {interval:g}s\n"
            f"    static_configs:\n{groups}")


def shares(cluster: NodeCluster) -> dict[str, int]:
    return {nid: len(node.get("/agent/api/v1/metrics/targets", timeout=30).json()["data"])
            for nid, node in cluster.nodes.items()}


def idle_cpu(cluster: NodeCluster, seconds: float) -> tuple[float, float]:
    """CPU seconds and event-loop wakeups per second of a node running nothing (heartbeats, watches,
    reshard timer)."""
    (node,) = cluster.nodes.values()
    cpu0, wake0, t0 = cpu_seconds(node.pid), wakeups(node.pid), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return (cpu_seconds(node.pid) - cpu0) / wall, (wakeups(node.pid) - wake0) / wall


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    return subprocess.Popen([spy, "record", "--nonblocking", "--gil", "-p", str(pid), "-d", str(int(seconds)),
                             "-r", "50", "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int = 25) -> str:
    """Top frames of a collapsed-stacks file by own samples and by samples that include them."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    rows = [f"{samples} samples", "own:"] + [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    rows += ["total:"] + [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(rows) + "\n"


def measure(cluster: NodeCluster, targets: ManyTargets, total: int, interval: float, seconds: float,
            profile: tuple[str, Path] | None = None) -> dict[str, object]:
    """Wait until the nodes' shares add up to every target and a full interval passed, then measure."""
    wait_for(lambda: sum(shares(cluster).values()) == total and all(shares(cluster).values()), 120,
             interval=1.0, what="every target scraped by exactly one node")
    time.sleep(2 * interval + 3)  # every loop past its first scrape, every handoff done
    pids = {nid: node.pid for nid, node in cluster.nodes.items()}
    cpu0 = {nid: cpu_seconds(pid) for nid, pid in pids.items()}
    wake0 = {nid: wakeups(pid) for nid, pid in pids.items()}
    spy = start_profile(pids[profile[0]], seconds, profile[1]) if profile else None
    scrapes0, t0 = targets.total(), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = {nid: (cpu_seconds(pid) - cpu0[nid]) / wall for nid, pid in pids.items()}
    wake = {nid: (wakeups(pid) - wake0[nid]) / wall for nid, pid in pids.items()}
    if spy is not None and profile is not None:
        spy.wait(60)
        profile[1].with_suffix(".summary.txt").write_text(summarize(profile[1]))
    return {"targets": shares(cluster), "cpu": cpu, "wakeups": wake,
            "scrapes_per_s": (targets.total() - scrapes0) / wall, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=3000)
    parser.add_argument("--series", type=int, default=10, help="series per target page")
    parser.add_argument("--interval", type=float, default=10.0, help="scrape interval, seconds")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per phase")
    parser.add_argument("--profile", type=Path, help="py-spy one node per phase into this directory")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the reference phase (one node scraping a third of the targets)")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="bench-target-sharding-") as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        etcd.start()
        targets = ManyTargets(args.targets, args.series, identify=False).start()
        cluster = NodeCluster(root, etcd.endpoint, lease_ttl="5s", heartbeat="1s", reshard_interval="30s")
        try:
            (n0,) = cluster.add(1)
            idle, idle_wakeups = idle_cpu(cluster, min(args.seconds, 15.0))
            third = None
            if not args.no_reference:
                count = args.targets // 3
                resp = n0.request("PUT", "/agent/api/v1/config/third", config(targets, args.interval, count),
                                  timeout=60)
                assert resp.status in (200, 201), resp.text
                third = measure(cluster, targets, count, args.interval, args.seconds)
                resp = n0.request("DELETE", "/agent/api/v1/config/third", timeout=60)
                assert resp.status in (200, 204), resp.text
                wait_for(lambda: sum(shares(cluster).values()) == 0, 60, interval=1.0, what="reference gone")
            resp = n0.request("PUT", "/agent/api/v1/config/big", config(targets, args.interval), timeout=60)
            assert resp.status in (200, 201), resp.text
            one = measure(cluster, targets, args.targets, args.interval, args.seconds,
                          ("n0", args.profile / "one-node.txt") if args.profile else None)
            for node in cluster.add(2, wait=False):
                node.wait_ready(120)  # a loaded machine may take longer than the harness' 30 s
            three = measure(cluster, targets, args.targets, args.interval, args.seconds,
                            ("n1", args.profile / "three-nodes-n1.txt") if args.profile else None)
        finally:
            cluster.close()
            targets.stop()
            etcd.remove()

    expected = args.targets / args.interval
    print(f"{args.targets} targets x {args.series} series every {args.interval:g}s "
          f"({expected:.0f} scrapes/s), {args.seconds:g}s windows")
    phases = [("1 node", one), ("3 nodes", three)]
    if third is not None:
        phases.insert(0, ("1 node, a third of the targets (reference)", third))
    for name, phase in phases:
        cpu: dict[str, float] = phase["cpu"]  # type: ignore[assignment]
        split: dict[str, int] = phase["targets"]  # type: ignore[assignment]
        wake: dict[str, float] = phase["wakeups"]  # type: ignore[assignment]
        rows = ", ".join(f"{nid}: {split[nid]} targets, {cpu[nid]:.3f} CPU s/s, "
                         f"{1000 * (cpu[nid] - idle) * args.interval / split[nid]:.2f} ms/scrape above idle, "
                         f"{wake[nid] * args.interval / split[nid]:.1f} loop wakeups/scrape" for nid in sorted(cpu))
        print(f"{name}: {rows}; targets saw {phase['scrapes_per_s']:.0f} scrapes/s; "
              f"load average {phase['load']:.1f}")
    base = one["cpu"]["n0"]  # type: ignore[index]
    per_node: dict[str, float] = three["cpu"]  # type: ignore[assignment]
    print(f"idle node (no config): {idle:.3f} CPU s/s, {idle_wakeups:.0f} loop wakeups/s")
    print("CPU per node / one node doing all of it: "
          + ", ".join(f"{nid} {c / base:.2f}" for nid, c in sorted(per_node.items())))
    print("the same above the idle node's CPU: "
          + ", ".join(f"{nid} {(c - idle) / (base - idle):.2f}" for nid, c in sorted(per_node.items())))
    if third is not None:
        ref = third["cpu"]["n0"] / third["targets"]["n0"]  # type: ignore[index, operator]
        split3: dict[str, int] = three["targets"]  # type: ignore[assignment]
        print("CPU per node / one node scraping as many targets alone (reference, per target): "
              + ", ".join(f"{nid} {c / (ref * split3[nid]):.2f}" for nid, c in sorted(per_node.items())))


if __name__ == "__main__":
    main()
