"""The counts a scrape notes for its WAL records (recordcounts) equal what count() reads back from the bytes,
for every kind of scrape record: changing pages, unchanged pages (the layout fast path), explicit
timestamps, series that went away (stale markers), failed and broken pages, sample limits, OpenMetrics, and
the end-of-run stale markers. Scrapes run against the real loopback target server of the scrape tests."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random

import snappy

from service.http.client import HTTPClient
from service.metrics.recordcounts import COUNTS, CountTable, Note, RecordCounts
from service.metrics.remote.batch import count
from service.metrics.scrape.cache import ScrapeCache
from service.metrics.scrape.loop import ScrapeLoop
from service.metrics.scrape.target import Target
from tests.helpers.scrape_targets import TargetServer

LABELS = {"job": "j", "instance": "127.0.0.1"}
_IDS = itertools.count(1)


def read_back(body: bytes) -> RecordCounts:
    return RecordCounts(*dataclasses.astuple(count(snappy.uncompress(body))))


def make_loop(port: int, path: str, bodies: list[bytes], *, sample_limit: int = 0,
              honor_timestamps: bool = True) -> ScrapeLoop:
    owners = {}

    async def append(body: bytes) -> None:
        bodies.append(body)
        owners[body] = loop._report[0]
    labels = {**LABELS, "instance": f"127.0.0.1:{next(_IDS)}", "path": path}
    target = Target(dict(labels), dict(labels), {}, f"http://127.0.0.1:{port}{path}", 10.0, 5.0)
    loop = ScrapeLoop(target, HTTPClient(timeout=5.0), append, job="j", instance="i", honor_labels=False,
                      honor_timestamps=honor_timestamps, sample_limit=sample_limit, body_size_limit=0,
                      cache=ScrapeCache(dict(labels)))
    loop.owners = owners  # type: ignore[attr-defined]
    return loop


def dyn_page(rng: random.Random) -> list[bytes]:
    lines = []
    for i in rng.sample(range(40), rng.randrange(0, 40)):
        value = rng.choice(["0", "1.5", "-2", "NaN", "+Inf", "1e300"])
        stamp = f" {rng.choice([1, -5, 1_700_000_000_000, 4_000_000_000_000])}" if rng.random() < 0.15 else ""
        lines.append(f'm_{i % 9}{{k="{i}"}} {value}{stamp}'.encode())
    if rng.random() < 0.05:
        lines.append(b"this is not valid")
    return lines


def test_noted_counts_equal_the_counts_read_back() -> None:
    async def main() -> None:
        server = TargetServer()
        await server.start()
        bodies: list[bytes] = []
        loops = [make_loop(server.port, "/dyn", bodies), make_loop(server.port, "/dyn", bodies, sample_limit=20),
                 make_loop(server.port, "/dyn", bodies, honor_timestamps=False),
                 make_loop(server.port, "/text", bodies), make_loop(server.port, "/om", bodies),
                 make_loop(server.port, "/many", bodies, sample_limit=10),
                 make_loop(server.port, "/invalid", bodies)]
        rng = random.Random(14)
        try:
            for step in range(60):
                if step % 3 != 2:  # every third scrape sees the page unchanged: the fast path
                    server.state["series"] = dyn_page(rng)
                server.state["down"] = rng.random() < 0.1
                for loop in loops:
                    await loop.scrape_once()
            for loop in loops:
                await loop.stop(write_stale=True)
        finally:
            for loop in loops:
                await loop.client.close()
            await server.stop()
        assert len(bodies) == 60 * len(loops) + len(loops)
        counted = [read_back(body) for body in bodies]
        assert [COUNTS.get(body).counts for body in bodies] == counted  # type: ignore[union-attr]
        owners = {body: owner for loop in loops for body, owner in loop.owners.items()}  # type: ignore[attr-defined]
        assert [COUNTS.get(body).owner for body in bodies] == [owners[body] for body in bodies]  # type: ignore[union-attr]
        assert len(set(owners.values())) == len(loops)  # each target its own owner key
        assert any(c.highest_ts_ms == 4_000_000_000_000 for c in counted)  # an explicit timestamp was highest
        assert sum(c.samples for c in counted) > 60 * 5 * len(loops)
    asyncio.run(main())


def test_the_table_keeps_what_its_bound_allows() -> None:
    table = CountTable(max_bytes=100)
    bodies = [bytes([i]) * 30 for i in range(5)]
    for i, body in enumerate(bodies):
        table.note(body, RecordCounts(i, 0, 0, 0, i), b"o")
    assert [table.get(b) for b in bodies] == [None, None, *(Note(RecordCounts(i, 0, 0, 0, i), b"o") for i in (2, 3, 4))]
    table.note(b"x" * 101, RecordCounts(1, 0, 0, 0, 1), b"o")  # larger than the whole table: not kept
    assert table.get(b"x" * 101) is None and len(table) == 3
    assert table.get(memoryview(bodies[4])) is None  # type: ignore[arg-type]
