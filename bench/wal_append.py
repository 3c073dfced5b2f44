"""WAL append micro benchmark: durable appends from 16 concurrent appenders (group commit).

Prints records/s, MB/s, fsyncs/s, records per fsync and append_durable latency (p50/p99) for 100 B and
188 KB records, with the default sync_interval (5 ms) and with none (pure group commit), plus the rate
of plain (non-durable) appends. Run: ``python bench/wal_append.py [--seconds 3] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from service.wal import WAL


async def durable(directory: str, size: int, writers: int, seconds: float, interval: float) -> dict:
    wal = WAL.open(directory, sync_interval=interval, instance=f"bench-{size}-{interval}")
    body = os.urandom(size)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def appender() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await wal.append_durable(1, body)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    fsyncs = wal.fsync_count
    await wal.aclose()
    latencies.sort()
    n = len(latencies)
    return {
        "records/s": n / elapsed,
        "MB/s": n * size / elapsed / 1e6,
        "fsyncs/s": fsyncs / elapsed,
        "rec/fsync": n / max(fsyncs, 1),
        "p50 ms": latencies[n // 2] * 1e3,
        "p99 ms": latencies[int(n * 0.99)] * 1e3,
    }


async def plain(directory: str, size: int, count: int) -> dict:
    wal = WAL.open(directory, instance=f"bench-plain-{size}")
    body = os.urandom(size)
    started = time.perf_counter()
    for _ in range(count):
        wal.append(1, body)
    appended = time.perf_counter() - started
    await wal.sync_barrier()
    elapsed = time.perf_counter() - started
    fsyncs = wal.fsync_count
    await wal.aclose()
    return {
        "append() calls/s": count / appended,
        "records/s to disk": count / elapsed,
        "MB/s": count * size / elapsed / 1e6,
        "fsyncs": fsyncs,
    }


def fmt(result: dict) -> str:
    return "  ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())


async def main(args: argparse.Namespace) -> None:
    base = tempfile.mkdtemp(prefix="walbench-", dir=args.dir)
    try:
        for size in (100, 188 * 1024):
            for interval in (0.005, 0.0):
                d = tempfile.mkdtemp(dir=base)
                r = await durable(d, size, args.writers, args.seconds, interval)
                print(f"durable {size:>7} B  {args.writers} appenders  sync_interval={interval * 1e3:.0f}ms  "
                      + fmt(r), flush=True)
                shutil.rmtree(d)
            d = tempfile.mkdtemp(dir=base)
            count = 200_000 if size == 100 else 5_000
            print(f"plain   {size:>7} B  " + fmt(await plain(d, size, count)), flush=True)
            shutil.rmtree(d)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--dir", default=None, help="where to put the WAL (default: system temp dir)")
    parser.add_argument("--uvloop", action="store_true")
    arguments = parser.parse_args()
    if arguments.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(arguments))
