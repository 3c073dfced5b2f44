"""Remote write ingest: our `/write` (durable, group commit) against Prometheus 2.42 and vmagent.

Run from the repository root:  python -m bench.write_ingest [--duration 5] [--rounds 3] [--sync-intervals 0.001]

All three receive the same 2000-series x 1-sample body (bench.codec's Kubernetes-like label sets) from
`wrk -t2 -c16` with a Lua body script, in ``--rounds`` rounds: our node, Prometheus 2.42's receiver
(`--web.enable-remote-write-receiver`, server mode) and vmagent's `/api/v1/write` (its remote_write URL is a
dead loopback port, so everything it accepts queues in its on-disk persistent queue); the order within a
round alternates. The machine's load moves by 2x within a minute, so a ratio is taken between the phases of
one round and the median over the rounds is reported (with the worst round), not a ratio of bests from
different moments. Prints samples/s, p50/p99 per phase and samples per server CPU-second (user + system
time of the server's whole process tree from /proc/<pid>/stat, ingest workers included: steadier than
samples/s on a busy machine), with the ratios of ours to each peer. `--sync-intervals 0,0.001,0.005`
repeats our side per WAL group-commit interval; `--ingest-workers 0,1,2` per worker process count (default:
the node's own), side by side in every round.
The servers and wrk share this machine's cores, as in production-like single-node runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.codec import build_series
from tests.helpers.node_process import REPO, free_port, wait_for
from tests.helpers.processes import terminate
from tests.helpers.rw_payloads import write_body

SERIES = 2000
VMAGENT = "/usr/bin/vmagent"
PEERS = ("prometheus", "vmagent")
LUA = """
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Content-Encoding"] = "snappy"
wrk.headers["X-Prometheus-Remote-Write-Version"] = "0.1.0"
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d seconds=%.3f p50=%.3f p99=%.3f\\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    terminate(proc, 30)


def start_node(work: Path, sync_interval: float, workers: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cfg = work / "agent.yaml"
    cfg.write_text(f"server:\n  log_level: warn\nmetrics:\n  wal_directory: {work / 'wal'}\n"
                   + (f"  ingest_workers: {workers}\n" if workers is not None else "")
                   + "  configs:\n  - name: bench\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AGENT_WAL_SYNC_INTERVAL": str(sync_interval)}
    proc = subprocess.Popen([sys.executable, "-m", "service", f"-config.file={cfg}",
                             f"-server.http.address=127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(work / "node.log", "wb"))  # noqa: SIM115
    wait_for(lambda: up(f"http://127.0.0.1:{port}/-/ready"), 20, what="node")
    return proc, f"http://127.0.0.1:{port}/agent/api/v1/metrics/instance/bench/write"


def start_prometheus(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (work / "prometheus.yml").write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    proc = subprocess.Popen(["prometheus", "--web.enable-remote-write-receiver",
                             f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "wb"))  # noqa: SIM115
    wait_for(lambda: up(f"http://127.0.0.1:{port}/-/ready"), 30, what="prometheus")
    return proc, f"http://127.0.0.1:{port}/api/v1/write"


def start_vmagent(work: Path) -> tuple[subprocess.Popen, str]:
    """vmagent accepting remote write; its remote is a port nobody listens on, so it queues on disk."""
    port, dead = free_port(), free_port()
    proc = subprocess.Popen([VMAGENT, f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR",
                             f"-remoteWrite.url=http://127.0.0.1:{dead}/api/v1/write",
                             f"-remoteWrite.tmpDataPath={work / 'vmagent-data'}"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "vmagent.log", "wb"))  # noqa: SIM115
    wait_for(lambda: up(f"http://127.0.0.1:{port}/health"), 30, what="vmagent")
    return proc, f"http://127.0.0.1:{port}/api/v1/write"


def run_wrk(url: str, body_file: Path, lua: Path, duration: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{duration}s", "-s", str(lua), url],
                         env={**os.environ, "BODY": str(body_file)}, capture_output=True, text=True, check=True)
    match = re.search(r"RESULT (.*)", out.stdout)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    result = {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    ok = result["requests"] - result["non2xx"] - result["errors"]
    result["samples"] = ok * SERIES
    result["samples_per_s"] = ok * SERIES / result["seconds"]
    return result


def wal_sync_figures(write_url: str) -> tuple[float, float, float]:
    """(fsyncs, summed fsync seconds, records made durable) of our node so far, from its /metrics."""
    base = write_url.split("/agent/", 1)[0]
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    figures = {"agent_wal_fsync_duration_seconds_count": 0.0, "agent_wal_fsync_duration_seconds_sum": 0.0,
               "agent_wal_records_appended_total": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in figures:
            figures[name] += float(line.rsplit(" ", 1)[1])
    return tuple(figures.values())  # type: ignore[return-value]


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, user + system clock ticks) of a live process, including its reaped children's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (ingest workers), Linux."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)], ticks[int(entry)] = _stat(int(entry))
            except (OSError, ValueError):
                continue  # exited meanwhile
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def summary(r: dict[str, float]) -> str:
    return f"{r['samples_per_s'] / 1e3:8.0f}k samples/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms"


def start(target: str, sub: Path) -> tuple[subprocess.Popen, str]:
    if target == "prometheus":
        return start_prometheus(sub)
    if target == "vmagent":
        return start_vmagent(sub)
    fields = dict(part.split("=") for part in target.split()[1:])  # "ours sync=1ms [workers=N]"
    workers = int(fields["workers"]) if "workers" in fields else None
    return start_node(sub, float(fields["sync"][:-2]) / 1000, workers)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (ours, Prometheus, vmagent) phases; ratios are taken within each round")
    parser.add_argument("--sync-intervals", default="0.001",
                        help="comma-separated WAL group-commit intervals (s) to measure ours with")
    parser.add_argument("--ingest-workers", default=None,
                        help="comma-separated metrics.ingest_workers values to measure ours with, each in every "
                             "round (default: the node's own default)")
    args = parser.parse_args()
    for tool in ("wrk", "prometheus", VMAGENT):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (tests/install-deps.sh installs it)", file=sys.stderr)
            return 1
    intervals = [float(x) for x in args.sync_intervals.split(",")]
    counts = [""] if args.ingest_workers is None else [f" workers={int(n)}" for n in args.ingest_workers.split(",")]
    ours = [f"ours sync={s * 1000:g}ms{w}" for s in intervals for w in counts]
    with tempfile.TemporaryDirectory(prefix="write-ingest-") as tmp:
        work = Path(tmp)
        body = work / "body.bin"
        # a fresh timestamp so Prometheus accepts the (identical, hence duplicate-tolerated) sample
        body.write_bytes(write_body(build_series(SERIES), ts_ms=int(time.time() * 1000)))
        lua = work / "post.lua"
        lua.write_text(LUA)
        print(f"body: {SERIES} series x 1 sample, {body.stat().st_size} bytes snappy; wrk -t2 -c16 "
              f"-d{args.duration}s; {os.cpu_count()} cores shared by server and wrk; "
              f"ingest_workers {args.ingest_workers if args.ingest_workers is not None else 'default'}; "
              f"load average {os.getloadavg()[0]:.1f}")
        results: dict[str, list[dict[str, float]]] = {}
        for round_ in range(1, args.rounds + 1):
            order = [*ours, *PEERS]
            if round_ % 2 == 0:
                order.reverse()  # who runs first in a round alternates: load drifts within a round too
            for target in order:
                sub = work / f"{target.replace(' ', '_')}-{round_}"
                sub.mkdir()
                proc, url = start(target, sub)
                ours_now = target.startswith("ours")
                try:
                    sync0 = wal_sync_figures(url) if ours_now else (0.0, 0.0, 0.0)
                    cpu0 = cpu_seconds(proc.pid)
                    r = run_wrk(url, body, lua, args.duration)
                    cpu = cpu_seconds(proc.pid) - cpu0
                    syncs, sync_s, records = (b - a for a, b in zip(sync0, wal_sync_figures(url), strict=True)) \
                        if ours_now else (0.0, 0.0, 0.0)
                finally:
                    stop(proc)
                r["per_cpu_s"] = r["samples"] / max(cpu, 1e-3)
                # durable acks wait for the fsync: under a disk shared with other work its latency, not CPU,
                # can bound our throughput (16 connections / fsync time), which vmagent's in-memory ack is not
                wal = (f"  fsync {1e3 * sync_s / syncs:5.1f} ms mean, {records / syncs:4.1f} requests per fsync"
                       if syncs else "")
                print(f"round {round_} {target:18s} {summary(r)}  {r['requests'] / r['seconds']:6.0f} req/s  "
                      f"non2xx {int(r['non2xx'])} errors {int(r['errors'])}  "
                      f"server CPU {cpu:5.1f} s: {r['per_cpu_s'] / 1e3:5.0f}k samples per CPU-second  "
                      f"load {os.getloadavg()[0]:.1f}{wal}", flush=True)
                results.setdefault(target, []).append(r)
        print(f"median of {args.rounds} rounds (throughput; samples per server CPU-second):")
        for target, runs in results.items():
            print(f"  {target:18s} {median([r['samples_per_s'] for r in runs]) / 1e3:8.0f}k samples/s  "
                  f"p99 {median([r['p99'] for r in runs]):6.1f} ms  "
                  f"{median([r['per_cpu_s'] for r in runs]) / 1e3:5.0f}k per CPU-s")
        print("ours / peer, each ratio taken within one round (the phases of a round run back to back):")
        for target in ours:
            for peer in PEERS:
                pairs = list(zip(results[target], results[peer], strict=True))
                tput = [a["samples_per_s"] / b["samples_per_s"] for a, b in pairs if b["samples_per_s"]]
                cpu_ratio = [a["per_cpu_s"] / b["per_cpu_s"] for a, b in pairs if b["per_cpu_s"]]
                print(f"  {target} / {peer}: throughput median {median(tput):.2f}x "
                      f"(min {min(tput, default=float('nan')):.2f}x), samples per CPU-second median "
                      f"{median(cpu_ratio):.2f}x (min {min(cpu_ratio, default=float('nan')):.2f}x)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
