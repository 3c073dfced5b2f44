"""Scrape benchmark: N loopback targets x S series, scraped by our ScrapeManager + WAL (its own process: the
scrape loops appending to a real WAL, without the HTTP server, the config API or remote_write) and by
Prometheus in agent mode, side by side in the same run. The whole node is measured by the pipeline mode.

Samples are counted, not derived: ours are the samples in the WAL records appended during the window
(between two WAL positions the scraper reports when asked with SIGUSR1), Prometheus' are the difference of
its ``prometheus_agent_samples_appended_total``. The run fails (exit 1) if any target was down or either
scraper fell behind (fewer scrapes in the window than every target's interval allows).

Prints process CPU seconds per million samples for both, the ratio, and our RSS per active series.
Run: ``python bench/scrape.py [--targets 50] [--series 2000] [--interval 5] [--warmup 10] [--seconds 30]``.
Modes used internally: ``--serve PORT...`` (the targets), ``--ours CONFIG`` (our scraper).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def page(series: int, variant: int) -> bytes:
    lines, n = [], 0
    families = [("http_requests_total", "counter"), ("queue_depth", "gauge"), ("rpc_client_requests_total", "counter"),
                ("worker_busy_ratio", "gauge")]
    per = series // len(families)
    for name, kind in families:
        lines.append(f"# HELP {name} Bench family.\n# TYPE {name} {kind}")
        for i in range(per):
            lines.append(f'{name}{{service="svc{i % 7}",handler="/api/v{i % 3}/item{i}",code="{200 + i % 5}"}} '
                         f"{(i * 13 + variant) % 1000}")
            n += 1
    while n < series:
        lines.append(f'app_filler{{slot="{n}"}} {variant}')
        n += 1
    return ("\n".join(lines) + "\n").encode()


def serve(ports: list[int], series: int) -> None:
    pages = [gzip.compress(page(series, v), 6) for v in range(8)]

    class Proto(asyncio.Protocol):
        count = 0

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            self.t, self.buf = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                _, self.buf = self.buf.split(b"\r\n\r\n", 1)
                Proto.count += 1
                body = pages[Proto.count % 8]
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Encoding: gzip\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for port in ports:
            await loop.create_server(Proto, "127.0.0.1", port)
        await asyncio.Event().wait()
    asyncio.run(main())


def ours(config_path: str, wal_dir: str) -> None:
    import uvloop

    from service.config import schema
    from service.metrics.config.scrape import ScrapeConfig
    from service.metrics.scrape.manager import ScrapeManager
    from service.wal import WAL

    async def main() -> None:
        with open(config_path) as fh:
            scs = schema.loads(list[ScrapeConfig], fh.read())
        wal = WAL.open(wal_dir, instance="bench")

        async def append(body: bytes) -> None:
            await wal.append_durable(1, body)
        mgr = ScrapeManager("bench", scs, append)
        await mgr.start()
        stop = asyncio.Event()

        def report() -> None:  # SIGUSR1: where the WAL ends now, and how the scrapers are doing
            loops = [loop for pool in mgr.pools.values() for loop in pool.loops.values()]
            print(json.dumps({"position": list(wal.durable_position), "scrapes": sum(lp.scrapes for lp in loops),
                              "targets": len(loops), "up": sum(lp.health == "up" for lp in loops),
                              "errors": sorted({lp.last_error for lp in loops if lp.last_error})[:3]}), flush=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, report)
        await stop.wait()
        targets = mgr.targets()
        up = sum(1 for t in targets if t["state"] == "up")
        scrapes = sum(loop.scrapes for pool in mgr.pools.values() for loop in pool.loops.values())
        errors = {t["scrape_error"] for t in targets if t["scrape_error"]}
        print(f"ours: {up}/{len(targets)} targets up, {scrapes} scrapes, errors: {sorted(errors)[:3]}", flush=True)
        await mgr.stop(write_stale=False)
        await wal.aclose()
    uvloop.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours_state(proc: subprocess.Popen) -> dict:
    """Ask our scraper (SIGUSR1) for its WAL end position, scrape count and target health."""
    proc.send_signal(signal.SIGUSR1)
    return json.loads(proc.stdout.readline())


def prom_state(port: int) -> dict:
    """Prometheus' own counters: samples appended to its WAL, scrapes done, and target health."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10) as resp:
        targets = json.loads(resp.read())["data"]["activeTargets"]
    return {"appended": total("prometheus_agent_samples_appended_total"),
            "scrapes": total("prometheus_target_interval_length_seconds_count"), "targets": len(targets),
            "up": sum(t["health"] == "up" for t in targets),
            "errors": sorted({t["lastError"] for t in targets if t["lastError"]})[:3]}


def wal_samples(wal_dir: str, start: list[int], end: list[int]) -> int:
    """Samples in the WAL records between two positions (read after our scraper has stopped)."""
    import snappy

    from service.metrics.remote.batch import count
    from service.wal import Position
    from service.wal.reader import read_records

    stop = Position(*end)
    total = 0
    for rec in read_records(wal_dir, Position(*start)):
        if rec.end > stop:
            break
        total += count(snappy.uncompress(rec.payload), highest=False).samples
    return total


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_port(port: int, deadline: float) -> None:
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def run(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="scrape-bench-")
    procs: list[subprocess.Popen] = []
    try:
        ports = [free_port() for _ in range(args.targets)]
        procs.append(subprocess.Popen([sys.executable, __file__, "--series", str(args.series), "--serve",
                                       *map(str, ports)]))
        for port in ports:
            wait_port(port, time.time() + 20)
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
        every = f"{int(args.interval)}s"
        scrape = (f"- job_name: bench\n  scrape_interval: {every}\n  scrape_timeout: {every}\n"
                  f"  static_configs:\n    - targets: [{targets}]\n")
        with open(os.path.join(tmp, "ours.yml"), "w") as fh:
            fh.write(scrape)
        with open(os.path.join(tmp, "prom.yml"), "w") as fh:
            fh.write("scrape_configs:\n" + scrape)
        prom_port = free_port()
        ours_p = subprocess.Popen([sys.executable, __file__, "--ours", os.path.join(tmp, "ours.yml"),
                                   "--wal", os.path.join(tmp, "wal")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        procs.append(ours_p)
        prom = subprocess.Popen(["prometheus", "--enable-feature=agent", f"--config.file={tmp}/prom.yml",
                                 f"--storage.agent.path={tmp}/prom", f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)
        wait_port(prom_port, time.time() + 30)
        time.sleep(args.warmup)
        c0 = {"ours": cpu_seconds(ours_p.pid), "prom": cpu_seconds(prom.pid)}
        s0 = {"ours": ours_state(ours_p), "prom": prom_state(prom_port)}
        t0 = time.time()
        time.sleep(args.seconds)
        elapsed = time.time() - t0
        c1 = {"ours": cpu_seconds(ours_p.pid), "prom": cpu_seconds(prom.pid)}
        s1 = {"ours": ours_state(ours_p), "prom": prom_state(prom_port)}
        rss = {"ours": rss_bytes(ours_p.pid), "prom": rss_bytes(prom.pid)}
        ours_p.send_signal(signal.SIGTERM)  # closes its WAL, so the window's records can be read back
        ours_p.wait(timeout=30)
        print(ours_p.stdout.read().strip())
        samples = {"ours": wal_samples(os.path.join(tmp, "wal"), s0["ours"]["position"], s1["ours"]["position"]),
                   "prom": s1["prom"]["appended"] - s0["prom"]["appended"]}
        active = args.targets * (args.series + 5)
        derived = active * elapsed / args.interval
        per_m = {k: (c1[k] - c0[k]) / samples[k] * 1e6 if samples[k] else math.inf for k in c0}
        print(f"load: {args.targets} targets x {args.series} series every {args.interval}s; window {elapsed:.0f}s "
              f"after {args.warmup}s warm-up; the load offers ~{derived:,.0f} samples in the window")
        names = (("ours", "ours: ScrapeManager + WAL (no HTTP, config API or remote_write)"),
                 ("prom", "Prometheus 2.42 agent"))
        for k, name in names:
            print(f"{name}: {samples[k]:,.0f} samples appended (counted), {s1[k]['scrapes'] - s0[k]['scrapes']:,.0f} "
                  f"scrapes; CPU {c1[k] - c0[k]:7.2f} s = {per_m[k]:6.2f} CPU s per million samples; "
                  f"RSS {rss[k] / 2**20:6.1f} MiB = {rss[k] / active:6.0f} B/series")
        print(f"ratio ours/prometheus CPU per sample: {per_m['ours'] / per_m['prom']:.2f} (target <= 2)")
        print(f"our RSS per active series: {rss['ours'] / active:.0f} B (target <= 2048)")
        problems = []
        least = args.targets * math.floor(elapsed / args.interval)  # every target, every interval in the window
        for k, name in names:
            for state in (s0[k], s1[k]):
                if state["up"] != args.targets or state["targets"] != args.targets:
                    problems.append(f"{name}: {state['up']}/{state['targets']} of {args.targets} targets up "
                                    f"{state['errors']}")
            if s1[k]["scrapes"] - s0[k]["scrapes"] < least:
                problems.append(f"{name} fell behind: {s1[k]['scrapes'] - s0[k]['scrapes']:.0f} scrapes in the "
                                f"window, at least {least} expected")
            if samples[k] < least * (args.series + 5):
                problems.append(f"{name} fell behind: {samples[k]:,.0f} samples appended, at least "
                                f"{least * (args.series + 5):,} expected")
        if problems:
            print("RUN FAILED: " + "; ".join(problems))
            sys.exit(1)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve", nargs="+", type=int)
    parser.add_argument("--ours")
    parser.add_argument("--wal")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.series)
    elif args.ours:
        ours(args.ours, args.wal)
    else:
        run(args)


if __name__ == "__main__":
    main()
