"""Instance start cost, in process: CPU per start (prepare + start, first scrape excluded), CPU per start of
an instance prepared ahead (only its scrape loops begin), RSS per idle instance,
idle CPU per instance, and CPU per halt and per drain (of both phases' instances).

Each config has one static loopback target and a 1 h scrape interval, so no scrape runs while measuring.
CPU is the whole process (every thread: WAL flush executor, to_thread workers), from time.process_time().
Run: ``python bench/instance_start.py [--instances 2000]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.reshard import rss_kib
from service import gcpacing
from service.metrics.config import GlobalConfig, InstanceConfig, apply_defaults, parse_instance
from service.metrics.instance import MetricsInstance
from service.metrics.manager import InstanceManager, config_hash


def body(name: str) -> str:
    return (f"name: {name}\nscrape_configs:\n  - job_name: {name}\n    scrape_interval: 1h\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:9']\n")


async def run(count: int) -> list[tuple[str, str]]:
    root = tempfile.mkdtemp(prefix="bench-instance-start-")
    global_cfg = GlobalConfig()
    manager = InstanceManager(lambda cfg: MetricsInstance(cfg, global_cfg, root))
    cfgs: dict[str, InstanceConfig] = {}
    for i in range(count * 2):
        name = f"i-{i:05d}"
        cfgs[name] = apply_defaults(parse_instance(body(name), name), global_cfg)
    digests = {n: config_hash(c) for n, c in cfgs.items()}
    cold = dict(list(cfgs.items())[:count])
    warm = dict(list(cfgs.items())[count:])
    rows = []

    rss0, cpu0, t0 = rss_kib(os.getpid()), time.process_time(), time.monotonic()
    await manager.start_more(cold, digests)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    rows.append(("start (WAL open, discovery, scrape loops)",
                 f"{cpu / count * 1000:.3f} ms CPU, {wall / count * 1000:.3f} ms wall per instance"))
    await asyncio.sleep(2)  # settle: the WALs' first flushes, the pools' first sync
    rss1 = rss_kib(os.getpid())
    rows.append(("RSS per idle instance", f"{(rss1 - rss0) / count:.1f} KiB"))
    cpu_idle0 = time.process_time()
    await asyncio.sleep(10)
    idle = time.process_time() - cpu_idle0
    rows.append(("idle CPU per instance", f"{idle / 10 / count * 1e6:.1f} µs per second ({idle / 10:.1%} "
                                          f"of a core for {count})"))

    manager.prepare(warm, digests)
    cpu0, t0 = time.process_time(), time.monotonic()
    await manager.wait_prepared()
    prep_cpu = time.process_time() - cpu0
    cpu0, t0 = time.process_time(), time.monotonic()
    await manager.start_more(warm, digests)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    rows.append(("prepare ahead (WAL open, queues, discovery)", f"{prep_cpu / count * 1000:.3f} ms CPU per instance"))
    rows.append(("start of a prepared instance (scrape loops begin)",
                 f"{cpu / count * 1000:.3f} ms CPU, {wall / count * 1000:.3f} ms wall per instance"))
    cpu0, t0 = time.process_time(), time.monotonic()
    await manager.halt_all()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    rows.append(("halt (scrape loops end, claim may go)",
                 f"{cpu / count / 2 * 1000:.3f} ms CPU, {wall / count / 2 * 1000:.3f} ms wall per instance"))
    cpu0, t0 = time.process_time(), time.monotonic()
    await manager.wait_drained()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    rows.append(("drain after halt (queues stop, WAL closes)",
                 f"{cpu / count / 2 * 1000:.3f} ms CPU, {wall / count / 2 * 1000:.3f} ms wall per instance"))
    await manager.stop_all()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--default-gc", action="store_true",
                        help="keep CPython's default collector thresholds (a node paces them: gcpacing.py)")
    args = parser.parse_args()
    if not args.default_gc:
        gcpacing.pace()  # as a node does once started, before any config arrives
    rows = asyncio.run(run(args.instances))
    print(f"instance start: {args.instances} instances per phase, in process, "
          f"{'default' if args.default_gc else 'node'} GC pacing, load average {os.getloadavg()[0]:.1f}")
    for label, value in rows:
        print(f"  {label:<55} {value}")


if __name__ == "__main__":
    main()
