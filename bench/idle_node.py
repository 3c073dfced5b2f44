"""The fixed cost of one cluster node with nothing to do: one node on a real etcd, no configs.

Every node pays this whatever it scrapes (heartbeats, lease keepalives, watches, timers), so it bounds how far
per-target sharding can cut CPU per node. Reports over one window: CPU seconds per wall second (utime +
stime of every thread, /proc/<pid>/stat) and wakeups per second as context switches, of the main thread (the
event loop) and of every thread (/proc/<pid>/task/*/status), with the busiest threads by name.

Run: ``python bench/idle_node.py [--seconds 30] [--heartbeat 1s] [--lease-ttl 5s] [--profile OUT.raw]``
``--profile`` samples the node with ``py-spy record --nonblocking --gil`` (samples holding the GIL)
and prints the top frames; py-spy costs CPU of its own, so take figures from a run without it.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.target_sharding import cpu_seconds, start_profile, summarize
from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer


def switches(pid: int) -> dict[str, int]:
    """Context switches (voluntary + involuntary) per thread, keyed `name/tid`."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            continue  # the thread ended
        name = lines[0].split(":", 1)[1].strip()
        out[f"{name}/{tid}"] = sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--heartbeat", default="1s", help="lifecycler.heartbeat_period")
    parser.add_argument("--lease-ttl", default="5s", help="lifecycler.lease_ttl")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after the node is ready")
    parser.add_argument("--profile", type=Path, help="py-spy the node into this raw collapsed-stacks file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-idle-node-") as tmp:
        root = Path(tmp)
        etcd = EtcdServer(root / "etcd")
        etcd.start()
        cluster = NodeCluster(root, etcd.endpoint, lease_ttl=args.lease_ttl, heartbeat=args.heartbeat,
                              reshard_interval="30s")
        try:
            (node,) = cluster.add(1)
            time.sleep(args.settle)
            spy = start_profile(node.pid, args.seconds, args.profile) if args.profile else None
            cpu0, sw0, t0 = cpu_seconds(node.pid), switches(node.pid), time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - t0
            cpu1, sw1 = cpu_seconds(node.pid), switches(node.pid)
            if spy is not None:
                spy.wait(timeout=args.seconds + 30)
        finally:
            cluster.close()
            etcd.stop()

    rates = collections.Counter({t: (n - sw0.get(t, 0)) / wall for t, n in sw1.items()})
    main_thread = rates.get(f"{next(t.split('/')[0] for t in sw1 if t.endswith(f'/{node.pid}'))}/{node.pid}", 0.0)
    print(f"idle node, heartbeat {args.heartbeat}, lease TTL {args.lease_ttl}, {wall:.0f} s window, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"CPU {(cpu1 - cpu0) / wall:.4f} s/s; context switches/s: main thread {main_thread:.1f}, "
          f"all threads {sum(rates.values()):.1f} ({len(sw1)} threads)")
    print("busiest threads: " + ", ".join(f"{t} {r:.1f}/s" for t, r in rates.most_common(20) if r > 0.05))
    if args.profile:
        print(summarize(args.profile, top=20))


if __name__ == "__main__":
    main()
