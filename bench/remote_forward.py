"""WAL → RemoteWriteQueue → a fast local sink (and optionally a real Prometheus): samples/s.

Fills a WAL with remote write records of 2000 series x 1 sample each (as a Prometheus sender at defaults
produces them), then times one queue draining it: pass-through (stored bodies forwarded), with
external_labels (every series re-encoded from the label cache), and with 2 shards. The sink is an aiohttp
app in a child process (the other core), reading each body and answering 204.

    python bench/remote_forward.py [--records 200] [--prometheus]
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
from tests.prometheus_server import PrometheusServer, free_port
from tests.remote_helpers import request_body, rw_config

SERIES = 2000


def sink_main(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
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


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wal = await asyncio.to_thread(WAL.open, os.path.join(tmp, "wal"), instance="bench")
        await fill(wal, args.records, int(time.time() * 1000) - args.records * 1000)
        total = args.records * SERIES
        port = free_port()
        sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)])
        try:
            url = f"http://127.0.0.1:{port}/api/v1/write"
            for _ in range(200):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
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
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.sink:
        sink_main(ns.sink)
    else:
        asyncio.run(main(ns))
