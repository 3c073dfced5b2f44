"""Log search store benchmark: ingest cost on the push path, write rate, search/histogram latency at 1M entries.

    python bench/log_search.py [--mode store|node|all] [--entries 1000000] [--dir /tmp/x] [--seconds 10]
    python bench/log_search.py --mode store --build direct --entries 10000000 --dir D   # build a 10M store
    python bench/log_search.py --mode store --reuse --dir D                             # measure it again
    python bench/log_search.py --mode store --reuse --dir D --plain                     # and the plain paths

0. (--mode node) The store's cost on the REAL push path: see bench/log_search_node.py (a node subprocess with
   `search` on vs off, wrk pushing 1000-line protobuf batches over 16 connections; acked entries/s).

1. Ingest with the store off and on: a push-like loop (orjson-decode Loki JSON push bodies of 1000 lines,
   build entries) with and without `store.add()`; the background writer competes for the GIL, so the ratio is
   the store's real cost to push throughput (target: ≤ 20%).
2. Write rate: entries/s the writer thread commits (until `flush()` returns).
3. Latency p50/p95 over the API's queries at the full size (target: search p95 < 100 ms at 1M).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.logs.search import wordcounts
from service.logs.search.config import SearchConfig
from service.logs.search.query import Filters
from service.logs.search.routes import choose_bucket
from service.logs.search.schema import DB_FILE, SCHEMA_VERSION, connect, migrate
from service.logs.search.store import LogStore, encode_entries
from service.logs.search.writer_proc import MAX_TXN_ENTRIES, SHARED_SLOTS, _Streams, write_batch
from tests.helpers.log_search_helpers import Entry

WORDS = ["GET", "POST", "PUT", "DELETE", "user", "order", "payment", "cache", "session", "token", "request",
         "response", "upstream", "backend", "worker", "queue", "retry", "connection", "database", "query", "index",
         "shard", "replica", "leader", "follower"]
LEVELS = ["info"] * 80 + ["warn"] * 12 + ["error"] * 6 + ["fatal"] + ["debug"]


def push_bodies(total: int, start_ms: int, span_ms: int, per_body: int = 1000) -> list[bytes]:
    """Loki JSON push bodies: 20 containers, lines spread evenly over the span."""
    return list(iter_bodies(total, start_ms, span_ms, per_body))


def iter_bodies(total: int, start_ms: int, span_ms: int, per_body: int = 1000) -> Iterator[bytes]:
    """The bodies of `push_bodies`, one at a time (a 10M-entry store is built without holding them all)."""
    rng = random.Random(1)
    for b in range(0, total, per_body):
        streams: dict[str, list[list[str]]] = {}
        for i in range(b, min(total, b + per_body)):
            container = f"svc-{i % 20:02d}"
            words = " ".join(rng.choices(WORDS, k=6))
            line = f'level={rng.choice(LEVELS)} msg="{words}" id={i} latency_ms={rng.randint(1, 900)}'
            ts_ns = start_ms * 1_000_000 + i * span_ms * 1_000_000 // total  # integers: no float rounding
            streams.setdefault(container, []).append([str(ts_ns), line])
        yield orjson.dumps({"streams": [
            {"stream": {"container": c, "stream": "stderr" if c.endswith("7") else "stdout", "job": "bench"},
             "values": v} for c, v in streams.items()]})


def body_entries(body: bytes) -> list[Entry]:
    return [Entry(s["stream"], int(ts), line) for s in orjson.loads(body)["streams"] for ts, line in s["values"]]


def load_direct(directory: str, total: int, start_ms: int, span_ms: int) -> float:
    """Build the store with the writer process's own code (`write_batch`, batches of MAX_TXN_ENTRIES) in this
    process, without the pipe or the writer's nice level: how a 10M-entry store is built on a busy machine.
    Returns the entries/s of `write_batch` alone; it prints its CPU time per entry too (the writer's SQL cost,
    what the layout changes, and on a busy machine steadier than a rate)."""
    os.makedirs(directory, exist_ok=True)
    conn = connect(os.path.join(directory, DB_FILE))
    migrate(conn)
    streams = _Streams(conn, "container")
    shared = [0] * SHARED_SLOTS
    next_id, spent, cpu, batch, queued = 1, 0.0, 0.0, [], 0
    for body in iter_bodies(total, start_ms, span_ms):
        entries = body_entries(body)
        batch.append(("", encode_entries(entries), len(entries)))
        queued += len(entries)
        if queued >= MAX_TXN_ENTRIES or next_id + queued > total:
            t, c = time.perf_counter(), time.process_time()
            next_id = write_batch(conn, streams, next_id, batch, shared)
            spent += time.perf_counter() - t
            cpu += time.process_time() - c
            batch, queued = [], 0
            if next_id - 1 == MAX_TXN_ENTRIES or next_id % 500_000 < MAX_TXN_ENTRIES:  # as the writer's ticks do
                t, c = time.perf_counter(), time.process_time()
                wordcounts.choose_words(conn)
                spent += time.perf_counter() - t
                cpu += time.process_time() - c
            if next_id % 1_000_000 < MAX_TXN_ENTRIES or next_id > total:
                print(f"  {next_id - 1:,} written, {(next_id - 1) / spent:,.0f} entries/s, "
                      f"{cpu / (next_id - 1) * 1e6:.1f} CPU-µs per entry", flush=True)
    conn.close()
    return total / spent


def ingest(bodies: list[bytes], store: LogStore | None) -> float:
    """Push-like decoding of every body; returns entries/s seen by the caller."""
    n = 0
    started = time.perf_counter()
    for body in bodies:
        data = orjson.loads(body)
        for s in data["streams"]:
            labels = s["stream"]
            entries = [Entry(labels, int(ts), line) for ts, line in s["values"]]
            n += len(entries)
            if store is not None:
                store.add(entries, "")
    return n / (time.perf_counter() - started)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# The store's word paths of issue 14 (spelled-out prefixes and rarer words first, id-range histograms, counted
# words); off, a search takes the paths the store had before them.
WORD_PATHS = ("USE_TERMS", "USE_ID_RANGES", "USE_WORD_COUNTS")


def set_word_paths(store: LogStore, on: bool) -> None:
    for flag in WORD_PATHS:
        setattr(store, flag, on)


async def latencies(store: LogStore, now_ms: int, runs: int,
                    plain: bool = False) -> list[tuple[str, float, float, int, float, float]]:
    """(query, p50, p95, total, and with `plain` the p50 and p95 with the word paths off, else 0, 0). With
    `plain`, runs alternate between the two, so both see the same load."""
    hour = now_ms - 3_600_000
    day = now_ms - 86_400_000
    cases = {
        "search: newest 50, all": lambda: store.search(Filters(), 50, 0),
        "search: word 'payment'": lambda: store.search(Filters(query="payment"), 50, 0),
        "search: 2 words 'fatal upstream'": lambda: store.search(Filters(query="fatal upstream"), 50, 0),
        "search: prefix 'repl'": lambda: store.search(Filters(query="repl"), 50, 0),
        "search: rare 'id=123456'": lambda: store.search(Filters(query="id=123456"), 50, 0),
        "search: container svc-03, last hour": lambda: store.search(
            Filters(source="svc-03", from_ms=hour, to_ms=now_ms), 50, 0),
        "search: 'error' + container, last hour": lambda: store.search(
            Filters(query="error", source="svc-05", from_ms=hour, to_ms=now_ms), 50, 0),
        "search: stream stderr, page 20": lambda: store.search(Filters(stream="stderr"), 50, 1000),
        "histogram: last hour": lambda: store.histogram(Filters(from_ms=hour, to_ms=now_ms),
                                                        choose_bucket(3_600_000)),
        "histogram: 24h, all": lambda: store.histogram(Filters(from_ms=day, to_ms=now_ms),
                                                       choose_bucket(86_400_000)),
        "histogram: 24h, container svc-03": lambda: store.histogram(
            Filters(source="svc-03", from_ms=day, to_ms=now_ms), choose_bucket(86_400_000)),
        "histogram: 24h, word 'error'": lambda: store.histogram(Filters(query="error", from_ms=day, to_ms=now_ms),
                                                                choose_bucket(86_400_000)),
        "containers": lambda: store.sources(""),
    }
    out = []
    for name, fn in cases.items():
        times: dict[bool, list[float]] = {True: [], False: []}
        totals: dict[bool, int] = {}
        for _ in range(runs):
            for fast in (True, False) if plain else (True,):
                set_word_paths(store, fast)
                t = time.perf_counter()
                got = await fn()
                times[fast].append((time.perf_counter() - t) * 1000)
                totals[fast] = got[0] if isinstance(got[0], int) else (
                    got[1] if isinstance(got[1], int) else len(got))
        set_word_paths(store, True)
        assert not plain or totals[True] == totals[False], name
        slow = times[False] or [0.0]
        out.append((name, statistics.median(times[True]), pct(times[True], 95), totals[True],
                    statistics.median(slow), pct(slow, 95)))
    return out


def wait_for_counted_words(path: str, quiet_s: float = 25.0) -> None:
    """Wait until the writer has stopped adding counted words (it adds a few seconds' worth per retention tick,
    every 10 s; a store from before them gets its common words on its first open)."""
    conn = connect(path, readonly=True)
    t = time.perf_counter()
    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        n = conn.execute("SELECT count(*) FROM counted_words").fetchone()[0] if wordcounts.ready(conn) else 0
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(1.0)
    conn.close()
    print(f"{last} counted words ({time.perf_counter() - t:.0f} s until none were added for {quiet_s:.0f} s)",
          flush=True)


def open_store(directory: str, entries: int) -> LogStore:
    # No retention by size: a 10M-entry store is 3 GB, over the 1 GiB default, and deleting the oldest third
    # under the measured queries would change both the store and the figures.
    config = SearchConfig(max_queue_entries=2 * entries, max_size="1TiB")
    config.check()
    store = LogStore(config, directory)
    store.open()
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--dir", default="")
    ap.add_argument("--mode", choices=("store", "node", "all"), default="all")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--build", choices=("store", "direct"), default="store",
                    help="store: through LogStore (push-like ingest and write rate); direct: write_batch in this "
                         "process (a 10M-entry store on a busy machine, and the writer's SQL cost alone)")
    ap.add_argument("--reuse", action="store_true", help="measure the store already in --dir (kept afterwards)")
    ap.add_argument("--plain", action="store_true",
                    help="also measure every query with the word paths off (runs alternate: same load for both)")
    args = ap.parse_args()
    if args.mode in ("node", "all"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from log_search_node import run_node

        run_node(args.seconds, args.rounds)
        if args.mode == "node":
            return
    directory = args.dir or tempfile.mkdtemp(prefix="log-search-bench-")
    now_ms = int(time.time() * 1000)
    db = Path(directory, DB_FILE)
    if args.reuse and db.exists():
        conn = connect(str(db), readonly=True)
        last, entries = conn.execute("SELECT max(ts), count(*) FROM logs").fetchone()
        conn.close()
        now_ms = last + 1
        print(f"reusing the store in {directory}: {entries:,} entries (now = its newest entry)", flush=True)
        t = time.perf_counter()
        store = open_store(directory, args.entries)  # an older layout is migrated here, by the writer
        conn = connect(str(db), readonly=True)
        while conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            time.sleep(0.5)
        conn.close()
        print(f"opened (layout version {SCHEMA_VERSION}) in {time.perf_counter() - t:.1f} s", flush=True)
        wait_for_counted_words(str(db))
        args.entries = entries
    elif args.build == "direct":
        print(f"building {args.entries} entries over 24h with write_batch in this process ...", flush=True)
        rate = load_direct(directory, args.entries, now_ms - 86_400_000, 86_400_000)
        print(f"write_batch rate: {rate:,.0f} entries/s")
        store = open_store(directory, args.entries)
    else:
        print(f"building {args.entries} entries over 24h ...", flush=True)
        bodies = push_bodies(args.entries, now_ms - 86_400_000, 86_400_000)
        off = ingest(bodies, None)
        store = open_store(directory, args.entries)
        started = time.perf_counter()
        on = ingest(bodies, store)
        assert store.flush(3600)
        written = args.entries / (time.perf_counter() - started)
        dropped = store.status()["skippedEntries"]
        print(f"push-like ingest, store off: {off:,.0f} entries/s")
        print(f"push-like ingest, store on : {on:,.0f} entries/s  (cost {100 * (1 - on / off):.1f}% of push "
              f"throughput; skipped {dropped})")
        print(f"store write rate (ingest start → all committed): {written:,.0f} entries/s")

    async def run_latencies() -> list[tuple[str, float, float, int, float, float]]:
        return await latencies(store, now_ms, args.runs, args.plain)

    rows = asyncio.run(run_latencies())
    print(f"\nlatency over {args.runs} runs at {args.entries:,} entries (ms):")
    print(f"{'query':42} {'p50':>8} {'p95':>8} {'total':>10}" + (f" {'plain p50':>10} {'plain p95':>10}"
                                                                   if args.plain else ""))
    for name, p50, p95, total, plain50, plain95 in rows:
        print(f"{name:42} {p50:8.1f} {p95:8.1f} {total:10,}" + (f" {plain50:10.1f} {plain95:10.1f}"
                                                                  if args.plain else ""))
    size = Path(store.path).stat().st_size
    print(f"\ndatabase: {size / 1e6:.0f} MB ({size / args.entries:.0f} bytes/entry)")
    store.close()
    if not args.dir:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
