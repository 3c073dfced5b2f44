"""Word searches over time windows are exact whether or not the FTS matches are narrowed to the window's row
ids: totals, pages and histograms against counts made in Python, with entries arriving out of time order."""

from __future__ import annotations

import random
import sqlite3

from service.logs.search.query import Filters
from tests.aio import run
from tests.log_search_helpers import add_entries, entry, make_store, now_ms

MINUTE = 60_000
WORDS = ("alpha", "bravo", "charlie")
QUERIES = ("alpha", "bravo", "alpha bravo", "charlie alpha")


def test_word_searches_in_windows_are_exact(tmp_path) -> None:
    rng = random.Random(23)
    start = now_ms() - 3 * 60 * MINUTE
    rows = []
    for i in range(6_000):
        words = [w for w in WORDS if rng.random() < 0.4]
        rows.append((rng.randrange(start, start + 3 * 60 * MINUTE), rng.choice(("web", "db")),
                     rng.choice(("stdout", "stderr")), f"n{i} " + " ".join(words)))
    store = make_store(tmp_path)
    try:
        # Arrival order is not time order: row ids do not follow timestamps.
        for lo in range(0, len(rows), 500):
            add_entries(store, [entry(c, line, ts, s) for ts, c, s, line in rows[lo:lo + 500]])

        def want(f: Filters) -> list[int]:
            needed = set(f.query.split())
            return sorted((ts for ts, c, s, line in rows
                           if f.from_ms <= ts <= f.to_ms and f.source in (None, c) and f.stream in (None, s)
                           and needed <= set(line.split())), reverse=True)

        async def compare() -> None:
            for _ in range(120):
                lo = rng.randrange(start - 10 * MINUTE, start + 3 * 60 * MINUTE)
                hi = lo + rng.choice((rng.randrange(0, 5 * MINUTE), rng.randrange(0, 4 * 60 * MINUTE)))
                f = Filters(query=rng.choice(QUERIES), source=rng.choice((None, "web", "db")),
                            stream=rng.choice((None, "stderr")), from_ms=lo, to_ms=hi)
                stamps = want(f)
                bucket = rng.choice((MINUTE, 5 * MINUTE, 7_000))
                for narrow in (True, False):
                    store.WINDOW_ROWS = 200_000 if narrow else -1
                    total, page = await store.search(f, 20)
                    assert total == len(stamps) == await store.count(f), (f, narrow)
                    assert [e["timestamp"] for e in page] == stamps[:20], (f, narrow)
                    buckets, htotal = await store.histogram(f, bucket)
                    assert htotal == len(stamps) and sum(b["count"] for b in buckets) == len(stamps), (f, narrow)
            store.WINDOW_ROWS = 200_000
            # A window with no rows at all matches nothing.
            empty = Filters(query="alpha", from_ms=start - 60 * MINUTE, to_ms=start - 30 * MINUTE)
            assert await store.count(empty) == 0 and (await store.search(empty, 5))[0] == 0

        run(compare(), timeout=120)
        # A database from before the covering index (its writer adds it on open): counts still work without it.
        store.writer.stop()
        conn = sqlite3.connect(store.path)
        conn.execute("DROP INDEX logs_id")
        conn.close()
        store._covering_seen = False
        f = Filters(query="alpha", from_ms=start, to_ms=start + 60 * MINUTE)
        assert run(store.count(f)) == len(want(f)) > 0
        assert store._by_id(store._conn()) == ""
    finally:
        store.close()
