"""Word searches over time windows are exact whether or not the FTS matches are narrowed to the window's row
ids: totals, pages and histograms against counts made in Python, with entries arriving out of time order.
Totals read from the index's vocabulary and pages taken in row id order equal the plain paths byte for byte."""

from __future__ import annotations

import random
import sqlite3

from service.logs.search.query import Filters
from tests.helpers.aio import run
from tests.helpers.log_search_helpers import add_entries, entry, make_store, now_ms

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
                    store.WINDOW_MINUTE_ROWS = 50_000 if narrow else 0
                    total, page = await store.search(f, 20)
                    assert total == len(stamps) == await store.count(f), (f, narrow)
                    assert [e["timestamp"] for e in page] == stamps[:20], (f, narrow)
                    buckets, htotal = await store.histogram(f, bucket)
                    assert htotal == len(stamps) and sum(b["count"] for b in buckets) == len(stamps), (f, narrow)
            store.WINDOW_MINUTE_ROWS = 50_000
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



def _fold(text: str) -> str:
    return text.lower().replace("é", "e")


def test_vocabulary_totals_and_id_order_pages_equal_the_plain_path(tmp_path) -> None:
    """Stretches in time order (where the fast paths answer) and stretches out of it (where they must notice
    and step aside), words that begin several others, non-ASCII words, a second tenant, and deletions: every
    search equals the one made with both fast paths off, and the totals equal a count made in Python."""
    rng = random.Random(29)
    vocabulary = ("alpha", "alphabet", "bravo", "charlie", "élan", "Delta", "delta9")
    start = now_ms() - 2 * 60 * MINUTE
    rows: list[tuple[int, str, str]] = []
    ts = start
    for i in range(4_000):
        ts += rng.randrange(0, 2_000)
        late = 400 <= i % 1000 < 500  # in every 1000 rows, 100 that arrive late (older times, random)
        stamp = rng.randrange(start, ts) if late else ts
        rows.append((stamp, rng.choice(("web", "db")), f"n{i} " + " ".join(rng.sample(vocabulary, 2))))
    store = make_store(tmp_path)
    try:
        for lo in range(0, len(rows), 1000):
            add_entries(store, [entry(c, line, t) for t, c, line in rows[lo:lo + 1000]])

        def want(f: Filters) -> int:
            *whole, prefix = _fold(f.query).split()
            return sum(1 for t, c, line in rows
                       if (f.from_ms is None or f.from_ms <= t <= f.to_ms) and f.source in (None, c)
                       and (words := _fold(line).split()) and all(n in words for n in whole)
                       and any(w.startswith(prefix) for w in words))

        queries = ("alpha", "alph", "ALPHA", "bravo", "élan", "elan", "delta", "delta9", "nothing", "alpha bravo",
                   "n3", "n3999")

        async def both(f: Filters, limit: int, offset: int) -> tuple:
            store.USE_VOCAB = store.USE_ID_ORDER = True
            fast = await store.search(f, limit, offset)
            store.USE_VOCAB = store.USE_ID_ORDER = False
            plain = await store.search(f, limit, offset)
            store.USE_VOCAB = store.USE_ID_ORDER = True
            return fast, plain

        async def compare() -> None:
            for q in queries:
                for f in (Filters(query=q), Filters(query=q, source="db"),
                          Filters(query=q, from_ms=start + 30 * MINUTE, to_ms=start + 90 * MINUTE)):
                    total = want(f)
                    for limit, offset in ((50, 0), (20, 100), (7, 1500)):
                        fast, plain = await both(f, limit, offset)
                        assert fast == plain, (f, limit, offset)
                        assert fast[0] == total, f

        run(compare(), timeout=120)
        # The fast paths really answered: one word's total from the vocabulary, a common word's page by id.
        conn = store._conn()
        assert store._vocab_count(conn, Filters(query="bravo")) == want(Filters(query="bravo")) > 0
        assert store._vocab_count(conn, Filters(query="Delta9")) == want(Filters(query="delta9")) > 0
        assert store._vocab_count(conn, Filters(query="zzz")) == 0
        assert store._vocab_count(conn, Filters(query="alph")) is None  # alpha and alphabet: rows may hold both
        assert store._vocab_count(conn, Filters(query="élan")) is None  # not ASCII: not folded here
        assert store._page_by_id(conn, Filters(query="bravo"), store.ALL_IDS, "l.id, l.ts", 20, 0) is not None
        # Rows of a push are written stream by stream, so a page needs a few more ids than it shows; without
        # them the check refuses and the plain page answers.
        store.SPAN_IDS = 0
        assert store._page_by_id(conn, Filters(query="bravo"), store.ALL_IDS, "l.id, l.ts", 20, 0) is None
        run(compare(), timeout=120)
        store.SPAN_IDS = 100_000

        # A second tenant: a one-word total is no longer the vocabulary's.
        add_entries(store, [entry("web", "alpha other tenant", start + 5)], tenant="t2")
        run(compare(), timeout=120)

        # Deletions of the oldest rows (retention's own code) leave every path exact.
        from service.logs.search.retention import delete_oldest

        store.writer.stop()
        writer = sqlite3.connect(store.path, isolation_level=None)
        assert delete_oldest(writer, 1_200) == 1_200
        rows[:] = writer.execute("SELECT l.ts, s.source, l.line FROM logs l JOIN streams s ON s.id = l.sid "
                                 "WHERE l.tenant = ''").fetchall()
        writer.close()
        run(compare(), timeout=120)
        assert store._vocab_count(store._conn(), Filters(query="bravo")) == want(Filters(query="bravo")) > 0
    finally:
        store.close()
