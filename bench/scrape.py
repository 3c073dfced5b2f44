"""Scrape benchmark: N loopback targets x S series, scraped side by side in the same run by ours, the
Prometheus 2.42 agent (`prometheus --enable-feature=agent`) and vmagent 1.79 (`/usr/bin/vmagent`).

Default mode (scrape + queue on disk): ours is a ScrapeManager + WAL in its own process (the scrape loops
appending to a real WAL, without the HTTP server, the config API or remote_write). Prometheus appends to its
agent WAL with no remote_write. vmagent remote-writes to a dead loopback port, so every block goes to its
on-disk persistent queue (`-remoteWrite.tmpDataPath`), as ours goes to the WAL.

``--pipeline``: scrape -> WAL -> remote_write, all three sending to ONE shared receiver, a minimal loopback
sink (this file's ``--sink`` mode: a raw asyncio HTTP server that reads each body and answers 204 without
decoding it, so the receiver costs the same for every sender and is never the bottleneck). Ours is then a
whole MetricsInstance (WAL, scrape loops, remote_write queue), still without the HTTP server. The start-up
(every target's first page parsed in full) leaves a WAL backlog that adds remote_write shards for a while;
the window starts once our queue is back at one shard (the shard changes are printed).

Samples are counted, not derived. Ours are the samples in the WAL records appended during the window
(between two WAL positions the scraper reports when asked with SIGUSR1); Prometheus' are the difference of
its ``prometheus_agent_samples_appended_total``; vmagent's of its
``vmagent_remotewrite_global_rows_pushed_before_relabel_total``. With --pipeline the samples sent are also
printed (ours and Prometheus: ``prometheus_remote_storage_samples_total``, vmagent:
``vmagent_remotewrite_block_size_rows_sum``). CPU is utime+stime from /proc/<pid>/stat over the window, RSS
is VmRSS at its end, per active series (targets x (series + the scraper's own report series)). The run fails
(exit 1) if any target was down or any scraper fell behind (fewer scrapes in the window than every target's
interval allows).

Run: ``python bench/scrape.py [--pipeline] [--targets 50] [--series 2000] [--interval 5] [--warmup 10]
[--seconds 30] [--only ours,prom,vm]``. Modes used internally: ``--serve PORT...`` (the targets),
``--sink PORT`` (the receiver), ``--ours CONFIG`` (our scraper).
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


def sink(port: int) -> None:
    """The shared remote_write receiver of --pipeline: reads each Content-Length body and answers 204."""

    class Proto(asyncio.Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            self.t, self.buf, self.need = transport, bytearray(), -1

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                if self.need < 0:
                    end = self.buf.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    head = bytes(self.buf[:end]).lower()
                    del self.buf[:end + 4]
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    self.need = length
                if len(self.buf) < self.need:
                    return
                del self.buf[:self.need]
                self.need = -1
                self.t.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def main() -> None:
        await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", port)
        await asyncio.Event().wait()
    asyncio.run(main())


def ours(config_path: str, wal_dir: str, sink_url: str | None) -> None:
    """Our scraper: a ScrapeManager appending to a WAL, or with a sink URL a whole MetricsInstance (WAL,
    scrape loops, remote_write queue)."""
    import uvloop

    from service import mallocpacing
    from service.config import schema
    from service.metrics.config import GlobalConfig
    from service.metrics.config.instance import apply_defaults, parse_instance
    from service.metrics.config.scrape import ScrapeConfig
    from service.metrics.instance import MetricsInstance
    from service.metrics.scrape.manager import ScrapeManager
    from service.wal import WAL

    mallocpacing.pace()  # as the node does at start (service/server.py)

    async def main() -> None:
        with open(config_path) as fh:
            text = fh.read()
        instance: MetricsInstance | None = None
        if sink_url:
            cfg = apply_defaults(parse_instance(f"scrape_configs:\n{text}remote_write:\n  - url: {sink_url}\n",
                                                "bench"), GlobalConfig())
            instance = MetricsInstance(cfg, GlobalConfig(), wal_dir)
            await instance.start()
            assert instance.wal is not None and instance.scrape is not None
            wal, mgr = instance.wal, instance.scrape
        else:
            wal = WAL.open(wal_dir, instance="bench")

            async def append(body: bytes) -> None:
                await wal.append_durable(1, body)
            mgr = ScrapeManager("bench", schema.loads(list[ScrapeConfig], text), append)
            await mgr.start()
        stop = asyncio.Event()

        def sent() -> float:
            from prometheus_client import REGISTRY
            return sum(s.value for m in REGISTRY.collect() for s in m.samples
                       if s.name == "prometheus_remote_storage_samples_total")

        def report() -> None:  # SIGUSR1: where the WAL ends now, and how the scrapers are doing
            loops = [loop for pool in mgr.pools.values() for loop in pool.loops.values()]
            print(json.dumps({"dir": wal.directory, "position": list(wal.durable_position),
                              "scrapes": sum(lp.scrapes for lp in loops),
                              "targets": len(loops), "up": sum(lp.health == "up" for lp in loops),
                              "sent": sent(), "misses": sum(lp.cache.misses for lp in loops),
                              "shards": [list(q._resharding.history) for q in instance.queues] if instance else [],
                              "shards_now": max([q.shards for q in instance.queues] or [1]) if instance else 1,
                              "errors": sorted({lp.last_error for lp in loops if lp.last_error})[:3]}), flush=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, report)
        print(json.dumps({"ready": True}), flush=True)  # SIGUSR1 may be sent from now on
        await stop.wait()
        if instance is not None:
            await instance.halt()
            await instance.drain(0.0)
        else:
            await mgr.stop(write_stale=False)
            await wal.aclose()
    uvloop.run(main())


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, so none is picked twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ours_state(proc: subprocess.Popen) -> dict:
    """Ask our scraper (SIGUSR1) for its WAL end position, scrape count, target health and samples sent."""
    proc.send_signal(signal.SIGUSR1)
    while True:  # skip anything else it printed (log lines)
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"our scraper ended (exit code {proc.wait()})")
        if line.startswith('{"dir"'):
            return json.loads(line)
        print("ours:", line.rstrip())


def metrics_total(port: int, *names: str) -> dict[str, float]:
    """Sums of some counters of a Go scraper's own /metrics, over all their label sets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def prom_state(port: int) -> dict:
    """Prometheus' own counters: samples appended to its WAL, scrapes done, and target health."""
    m = metrics_total(port, "prometheus_agent_samples_appended_total",
                      "prometheus_target_interval_length_seconds_count", "prometheus_remote_storage_samples_total")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10) as resp:
        targets = json.loads(resp.read())["data"]["activeTargets"]
    return {"appended": m["prometheus_agent_samples_appended_total"],
            "scrapes": m["prometheus_target_interval_length_seconds_count"], "targets": len(targets),
            "sent": m["prometheus_remote_storage_samples_total"],
            "up": sum(t["health"] == "up" for t in targets),
            "errors": sorted({t["lastError"] for t in targets if t["lastError"]})[:3]}


def vm_state(port: int) -> dict:
    """vmagent's own counters: rows pushed to remote write (its queue), scrapes done, and target health."""
    m = metrics_total(port, "vmagent_remotewrite_global_rows_pushed_before_relabel_total",
                      "vm_promscrape_scrapes_total", "vmagent_remotewrite_block_size_rows_sum")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10) as resp:
        targets = json.loads(resp.read())["data"]["activeTargets"]
    return {"appended": m["vmagent_remotewrite_global_rows_pushed_before_relabel_total"],
            "scrapes": m["vm_promscrape_scrapes_total"], "targets": len(targets),
            "sent": m["vmagent_remotewrite_block_size_rows_sum"],
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


NAMES = {"ours": "ours", "prom": "Prometheus 2.42 agent", "vm": "vmagent 1.79"}
REPORT_SERIES = {"ours": 5, "prom": 5, "vm": 6}  # each scraper's own series per scrape (up, ...)


def run(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="scrape-bench-")
    procs: list[subprocess.Popen] = []
    which = [k for k in NAMES if k in args.only.split(",")]
    try:
        ports = free_ports(args.targets + 3)
        sink_port = ports.pop()  # --pipeline: the shared receiver; otherwise a port nobody listens on
        port_of = {"prom": ports.pop(), "vm": ports.pop()}
        procs.append(subprocess.Popen([sys.executable, __file__, "--series", str(args.series), "--serve",
                                       *map(str, ports)]))
        if args.pipeline:
            procs.append(subprocess.Popen([sys.executable, __file__, "--sink", str(sink_port)]))
            wait_port(sink_port, time.time() + 20)
        sink_url = f"http://127.0.0.1:{sink_port}/api/v1/write"
        for port in ports:
            wait_port(port, time.time() + 20)
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
        every = f"{int(args.interval)}s"
        scrape = (f"- job_name: bench\n  scrape_interval: {every}\n  scrape_timeout: {every}\n"
                  f"  static_configs:\n    - targets: [{targets}]\n")
        with open(os.path.join(tmp, "ours.yml"), "w") as fh:
            fh.write(scrape)
        with open(os.path.join(tmp, "prom.yml"), "w") as fh:
            fh.write("scrape_configs:\n" + scrape + (f"remote_write:\n  - url: {sink_url}\n" if args.pipeline else ""))
        with open(os.path.join(tmp, "vm.yml"), "w") as fh:
            fh.write("scrape_configs:\n" + scrape)
        pids: dict[str, int] = {}
        if "ours" in which:
            cmd = [sys.executable, __file__, "--ours", os.path.join(tmp, "ours.yml"), "--wal", os.path.join(tmp, "wal")]
            ours_p = subprocess.Popen(cmd + (["--sink-url", sink_url] if args.pipeline else []), cwd=ROOT,
                                      stdout=subprocess.PIPE, text=True)
            procs.append(ours_p)
            pids["ours"] = ours_p.pid
            while not ours_p.stdout.readline().startswith('{"ready"'):  # until then SIGUSR1 would end it
                if ours_p.poll() is not None:
                    raise RuntimeError("our scraper did not start")
        if "prom" in which:
            prom = subprocess.Popen(["prometheus", "--enable-feature=agent", f"--config.file={tmp}/prom.yml",
                                     f"--storage.agent.path={tmp}/prom",
                                     f"--web.listen-address=127.0.0.1:{port_of['prom']}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(prom)
            pids["prom"] = prom.pid
        if "vm" in which:
            vm = subprocess.Popen(["vmagent", f"-promscrape.config={tmp}/vm.yml", f"-remoteWrite.url={sink_url}",
                                   f"-remoteWrite.tmpDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{port_of['vm']}",
                                   "-loggerLevel=ERROR"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(vm)
            pids["vm"] = vm.pid
        for k in which:
            if k in port_of:
                wait_port(port_of[k], time.time() + 30)

        def states() -> dict[str, dict]:
            out = {}
            if "ours" in which:
                out["ours"] = ours_state(ours_p)
            if "prom" in which:
                out["prom"] = prom_state(port_of["prom"])
            if "vm" in which:
                out["vm"] = vm_state(port_of["vm"])
            return out
        deadline = time.time() + 120  # on a loaded machine start-up takes a while: the warm-up starts after it
        while time.time() < deadline and any(st["up"] != args.targets for st in states().values()):
            time.sleep(1)
        time.sleep(args.warmup)
        if "ours" in which and args.pipeline:  # the start-up backlog adds shards; measure once they are back
            while time.time() < deadline + 120 and ours_state(ours_p)["shards_now"] > 1:
                time.sleep(2)
        c0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        s0 = states()
        t0 = time.time()
        time.sleep(args.seconds)
        elapsed = time.time() - t0
        c1 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        s1 = states()
        rss = {k: rss_bytes(pid) for k, pid in pids.items()}
        samples = {k: s1[k].get("appended", 0) - s0[k].get("appended", 0) for k in which}
        if "ours" in which:
            ours_p.send_signal(signal.SIGTERM)  # closes its WAL, so the window's records can be read back
            ours_p.wait(timeout=60)
            samples["ours"] = wal_samples(s1["ours"]["dir"], s0["ours"]["position"], s1["ours"]["position"])
        active = {k: args.targets * (args.series + REPORT_SERIES[k]) for k in which}
        per_m = {k: (c1[k] - c0[k]) / samples[k] * 1e6 if samples[k] else math.inf for k in which}
        mode = "scrape -> WAL -> remote_write to one loopback sink" if args.pipeline else \
            "scrape -> WAL (vmagent: its on-disk queue, remote down)"
        print(f"{mode}; load: {args.targets} targets x {args.series} series every {args.interval}s; window "
              f"{elapsed:.0f}s after {args.warmup}s warm-up; load average {os.getloadavg()[0]:.1f}")
        for k in which:
            sent = f", {s1[k]['sent'] - s0[k]['sent']:,.0f} sent" if args.pipeline else ""
            print(f"{NAMES[k]:22s}: {samples[k]:,.0f} samples appended (counted){sent}, "
                  f"{s1[k]['scrapes'] - s0[k]['scrapes']:,.0f} scrapes; CPU {c1[k] - c0[k]:6.2f} s = "
                  f"{per_m[k]:5.2f} CPU s per million samples; RSS {rss[k] / 2**20:6.1f} MiB = "
                  f"{rss[k] / active[k]:5.0f} B/series")
        if "ours" in which:
            print(f"ours: {s1['ours']['misses'] - s0['ours']['misses']} scrape cache misses in the window"
                  + (f"; remote_write shard changes: {s1['ours']['shards']}" if args.pipeline else ""))
        for k in which:
            if k != "ours" and "ours" in which:
                print(f"ratio ours/{NAMES[k]} CPU per sample: {per_m['ours'] / per_m[k]:.2f}")
        problems = []
        least = args.targets * math.floor(elapsed / args.interval)  # every target, every interval in the window
        for k in which:
            for state in (s0[k], s1[k]):
                if state["up"] != args.targets or state["targets"] != args.targets:
                    problems.append(f"{NAMES[k]}: {state['up']}/{state['targets']} of {args.targets} targets up "
                                    f"{state['errors']}")
            if s1[k]["scrapes"] - s0[k]["scrapes"] < least:
                problems.append(f"{NAMES[k]} fell behind: {s1[k]['scrapes'] - s0[k]['scrapes']:.0f} scrapes in the "
                                f"window, at least {least} expected")
            # a scrape counted in the window may still be appending (waiting for its fsync) at either end
            fewest = (least - args.targets) * (args.series + REPORT_SERIES[k])
            if samples[k] < fewest:
                problems.append(f"{NAMES[k]} fell behind: {samples[k]:,.0f} samples appended, at least "
                                f"{fewest:,} expected")
        if problems:
            print("RUN FAILED: " + "; ".join(problems))
            sys.exit(1)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=70)
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
    parser.add_argument("--pipeline", action="store_true", help="scrape -> WAL -> remote_write to one sink")
    parser.add_argument("--only", default="ours,prom,vm", help="which scrapers run (comma-separated)")
    parser.add_argument("--serve", nargs="+", type=int)
    parser.add_argument("--sink", type=int)
    parser.add_argument("--sink-url")
    parser.add_argument("--ours")
    parser.add_argument("--wal")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.series)
    elif args.sink:
        sink(args.sink)
    elif args.ours:
        ours(args.ours, args.wal, args.sink_url)
    else:
        run(args)


if __name__ == "__main__":
    main()
