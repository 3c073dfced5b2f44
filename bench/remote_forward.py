"""WAL → RemoteWriteQueue → a fast local sink (and optionally a real Prometheus): samples/s.

Fills a WAL with remote write records of 2000 series x 1 sample each (as a Prometheus sender at defaults
produces them), then times one queue draining it: pass-through (stored bodies forwarded), with
external_labels (every series re-encoded from the label cache), and with 2 shards. The sink is an aiohttp
app in a child process (the other core), reading each body and answering 204.

    python bench/remote_forward.py [--records 200] [--prometheus]
    python bench/remote_forward.py --latency 50 [--seconds 60] [--rate 200000]

With ``--latency MS`` the sink holds every request that long (a remote far away) and a feeder appends
``--rate`` samples/s to the WAL for ``--seconds``: prints what one queue keeps up with, with one shard and with
dynamic shards (``max_shards`` 50), and the backlog left at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from service.wal import WAL
from tests.helpers.prometheus_server import PrometheusServer, free_port
from tests.helpers.remote_helpers import request_body, rw_config

SERIES = 2000


def sink_main(port: int, latency: float = 0.0) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if latency:
            await asyncio.sleep(latency)
        return web.Response(status=204)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/api/v1/write", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def fill(wal: WAL, records: int, start_ms: int) -> None:
    for r in range(records):
        wal.append(1, request_body(SERIES, start_ms + r * 1000, value=float(r)))
    await wal.sync_barrier()


async def drain(wal: WAL, url: str, name: str, external: dict[str, str], extra: str = "") -> float:
    from service.metrics.remote.queue import RemoteWriteQueue

    cfg = rw_config(url, extra or "queue_config: {batch_send_deadline: 5s}\n", name=name)
    q = RemoteWriteQueue(wal, cfg, instance="bench", external_labels=external)
    started = time.perf_counter()
    await q.start()
    while q.acked_position != wal.durable_position:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    await q.stop(10)
    assert q.samples_failed == 0, q.status()
    return q.samples_sent / elapsed


async def keep_up(wal: WAL, url: str, name: str, rate: int, seconds: float, extra: str) -> str:
    """Feed `rate` samples/s for `seconds` while one queue sends; a line of what it kept up with."""
    from service.metrics.remote.queue import RemoteWriteQueue

    q = RemoteWriteQueue(wal, rw_config(url, extra, name=name), instance="bench", external_labels={})
    await q.start()
    per_tick = max(1, rate // SERIES // 100)  # records every 10 ms
    started = time.monotonic()
    appended = 0
    sent_at: list[tuple[float, int]] = []
    next_tick = started
    body = request_body(SERIES, int(time.time() * 1000))  # one body, appended again and again: feeding is cheap
    while (now := time.monotonic()) - started < seconds:
        for _ in range(per_tick):
            wal.append(1, body)
            appended += SERIES
        sent_at.append((now, q.samples_sent))
        next_tick += 0.01
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    tail = [(t, s) for t, s in sent_at if t >= sent_at[-1][0] - seconds / 3]
    last_rate = (tail[-1][1] - tail[0][1]) / max(1e-9, tail[-1][0] - tail[0][0])
    backlog = appended - q.samples_sent
    shards, history = q.shards, q._resharding.changes
    await q.stop(1)
    return (f"{name:14s} appended {appended / seconds / 1e3:6.0f}k/s  sent (last third) {last_rate / 1e3:6.0f}k/s  "
            f"backlog at the end {backlog / 1e3:7.0f}k samples  shards {shards} ({history} changes)")


async def start_sink(latency_ms: float = 0.0) -> tuple[subprocess.Popen, str]:
    """The sink in a child process, once it accepts connections; and its write URL."""
    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port), "--latency", str(latency_ms)])
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return sink, f"http://127.0.0.1:{port}/api/v1/write"


async def main_latency(args: argparse.Namespace) -> None:
    sink, url = await start_sink(args.latency)
    try:
        print(f"sink answers after {args.latency:g} ms; feeding {args.rate / 1e3:.0f}k samples/s for "
              f"{args.seconds:g} s in records of {SERIES} series; max_samples_per_send 2000")
        for name, extra in (("1 shard", "queue_config: {max_shards: 1}\n"), ("dynamic (≤50)", "")):
            with tempfile.TemporaryDirectory() as tmp:
                wal = await asyncio.to_thread(WAL.open, os.path.join(tmp, "wal"), instance="bench")
                print(await keep_up(wal, url, name, args.rate, args.seconds, extra), flush=True)
                wal.close()
    finally:
        sink.terminate()
        sink.wait(10)


async def main(args: argparse.Namespace) -> None:
    if args.latency:
        await main_latency(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        wal = await asyncio.to_thread(WAL.open, os.path.join(tmp, "wal"), instance="bench")
        await fill(wal, args.records, int(time.time() * 1000) - args.records * 1000)
        total = args.records * SERIES
        sink, url = await start_sink()
        try:
            print(f"{total} samples in {args.records} records of {SERIES} series")
            for i in range(args.rounds):
                pt = await drain(wal, url, f"pass{i}", {})
                el = await drain(wal, url, f"ext{i}", {"cluster": "bench", "replica": "a"})
                sh = await drain(wal, url, f"shard{i}", {}, "queue_config: {min_shards: 2}\n")
                print(f"sink  pass-through {pt / 1e6:.2f}M samples/s   external_labels {el / 1e6:.2f}M   "
                      f"2 shards {sh / 1e6:.2f}M")
        finally:
            sink.terminate()
            sink.wait(10)
        if args.prometheus:
            with PrometheusServer(tmp, receiver=True) as prom:
                pt = await drain(wal, prom.write_url, "prom-pass", {})
            with PrometheusServer(tmp, receiver=True) as prom:
                el = await drain(wal, prom.write_url, "prom-ext", {"cluster": "bench"})
            print(f"prometheus 2.42 receiver: pass-through {pt / 1e3:.0f}k samples/s   "
                  f"external_labels {el / 1e3:.0f}k")
        wal.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prometheus", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0, help="ms the sink holds each request")
    parser.add_argument("--rate", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.sink:
        sink_main(ns.sink, ns.latency / 1000)
    else:
        asyncio.run(main(ns))
