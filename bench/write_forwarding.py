"""Remote write through a node that does not run the instance (forwarded to its owner) against the owner itself.

Run from the repository root:  python -m bench.write_forwarding [--duration 10]

Two nodes on a real etcd (the local `etcd` binary) share one config; wrk posts the same 2000-series body
(bench.write_ingest's) to the owner and to the other node, alternated twice. Prints samples/s, p50/p99 of
each and the forwarded/direct ratio. Both nodes, etcd and wrk share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.codec import build_series
from bench.write_ingest import LUA, SERIES, keep_best, run_wrk, summary
from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import wait_for
from tests.helpers.rw_payloads import write_body

WRITE = "/agent/api/v1/metrics/instance/bench/write"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    for tool in ("wrk", "etcd"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (tests/install-deps.sh installs it)", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="write-forwarding-") as tmp:
        work = Path(tmp)
        etcd = EtcdServer(work / "etcd")
        etcd.start()
        cluster = NodeCluster(work, etcd.endpoint, lease_ttl="10s", heartbeat="1s")
        try:
            cluster.add(2)
            cluster.put(["bench"])
            wait_for(lambda: cluster.exactly_once(["bench"]), 30, what="the config on its owner")
            running = cluster.running()
            owner = next(cluster.nodes[nid] for nid, names in running.items() if "bench" in names)
            other = next(n for n in cluster.nodes.values() if n is not owner)
            body = work / "body.bin"
            body.write_bytes(write_body(build_series(SERIES), ts_ms=int(time.time() * 1000)))
            lua = work / "post.lua"
            lua.write_text(LUA)
            print(f"body: {SERIES} series x 1 sample, {body.stat().st_size} bytes snappy; wrk -t2 -c16 "
                  f"-d{args.duration}s; {os.cpu_count()} cores shared by 2 nodes, etcd and wrk")
            best: dict[str, dict[str, float]] = {}
            for round_ in (1, 2):
                for target, node in (("direct to owner", owner), ("via other node", other)):
                    r = run_wrk(f"http://127.0.0.1:{node.port}{WRITE}", body, lua, args.duration)
                    print(f"round {round_} {target:16s} {summary(r)}  non2xx {int(r['non2xx'])} "
                          f"errors {int(r['errors'])}", flush=True)
                    keep_best(best, target, r)
            direct = best["direct to owner"]["samples_per_s"]
            print("best of 2:")
            for target, r in best.items():
                print(f"  {target:16s} {summary(r)}  ratio to direct {r['samples_per_s'] / direct:.2f}")
        finally:
            cluster.close()
            etcd.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
