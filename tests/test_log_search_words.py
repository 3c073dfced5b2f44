"""Word searches the store rewrites for its index (prefixes spelled out as the indexed words they begin, rarer
words first), pages bounded by the per-minute id bounds, and word histograms counted over clean id ranges: every
answer equals the plain path's byte for byte, on random data whose arrival order is partly not time order, with
a second tenant, several sources and streams, and after retention deleted the oldest rows."""

from __future__ import annotations

import random
import sqlite3

from service.logs.search import wordcounts
from service.logs.search.config import SearchConfig
from service.logs.search.query import Filters
from service.logs.search.retention import delete_oldest
from service.logs.search.schema import connect, migrate
from service.logs.search.store import ERROR_WORDS, LogStore, encode_entries
from service.logs.search.writer_proc import SHARED_SLOTS, _Streams, write_batch
from tests.helpers.aio import run
from tests.helpers.log_search_helpers import add_entries, entry, make_store, now_ms
from tests.helpers.polling import wait_for

MINUTE = 60_000
# Prefix families ("pay" begins three words, "zeta" more than MAX_TERMS), digits, a non-ASCII word, error words.
VOCABULARY = ("payment", "payments", "paymentx", "replica", "fatal", "upstream", "error", "errors", "panic",
              "élan", "delta9", "cache", *(f"zeta{i}" for i in range(11)))
QUERIES = ("payment", "paym", "payments", "repl", "replica", "fatal upstream", "upstream fatal", "error",
           "erro", "zeta", "zeta1", "delta", "élan", "cache payment", "fatal upstream error", "nothing", "pa",
           "payment nothing", "n1", "n12", "id=3")
# One indexed word each (counted from their blocks once common), and pairs of them.
COUNTED_QUERIES = ("replica", "payments", "cache", "upstream", "fatal", "panic", "replica fatal")
FLAGS = ("USE_TERMS", "USE_ID_RANGES", "USE_VOCAB", "USE_ID_ORDER", "USE_WORD_COUNTS")


def set_fast(store: LogStore, on: bool) -> None:
    """Every fast path on (pages by id and histograms by id ranges even for the few matches and rows of these
    stores), or all off."""
    for flag in FLAGS:
        setattr(store, flag, on)
    store.FEW_MATCHES = 0 if on else LogStore.FEW_MATCHES
    store.RANGE_MIN_IDS = 0  # these stores are small


def counted(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [w for (w,) in conn.execute("SELECT word FROM counted_words")]
    finally:
        conn.close()


def assert_blocks_exact(path: str) -> None:
    """Every counted word's block counts equal the index's own count of its matches in each block."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one snapshot, whatever the writer commits meanwhile
        for (word,) in conn.execute("SELECT word FROM counted_words").fetchall():
            want = dict(conn.execute(f"SELECT rowid >> {wordcounts.BLOCK_BITS}, count(*) FROM logs_fts WHERE "
                                     "logs_fts MATCH ? GROUP BY 1", (f'"{word}"',)).fetchall())
            assert dict(conn.execute("SELECT block, n FROM word_blocks WHERE word = ?", (word,)).fetchall()) == want
    finally:
        conn.close()


def random_rows(rng: random.Random, start: int, n: int) -> list[tuple[str, int, str, str, str]]:
    """(tenant, ts, source, stream, line): time mostly following arrival, with runs that arrive late."""
    rows = []
    ts = start
    for i in range(n):
        ts += rng.randrange(0, 3_000)
        late = 300 <= i % 1000 < 380
        stamp = rng.randrange(start, ts + 1) if late else ts
        words = rng.sample(VOCABULARY, rng.randrange(0, 4))
        rows.append(("t2" if i % 17 == 0 else "", stamp, rng.choice(("web", "db", "cron")),
                     rng.choice(("stdout", "stderr")), f"n{i} id={i % 50} " + " ".join(words)))
    return rows


def test_rewritten_words_pages_and_histograms_equal_the_plain_path(tmp_path) -> None:
    rng = random.Random(41)
    start = now_ms() - 4 * 60 * MINUTE
    rows = random_rows(rng, start, 5_000)
    store = make_store(tmp_path, retention_interval=0.2)  # the writer chooses the words to count at each tick
    try:
        for lo in range(0, len(rows), 500):  # one push per tenant per 500 rows
            for tenant in ("", "t2"):
                add_entries(store, [entry(c, line, ts, s) for t, ts, c, s, line in rows[lo:lo + 500]
                                    if t == tenant], tenant)
            if lo == 2_000:  # words counted from here on: later pushes keep their blocks exact
                wait_for(lambda: len(counted(store.path)) >= 5, 60, what="common words counted")
        end = max(r[1] for r in rows)
        wait_for(lambda: {"payment", "replica", "cache"} <= set(counted(store.path)), 60, what="words counted")
        assert_blocks_exact(store.path)

        async def both(call, *args) -> tuple:
            set_fast(store, True)
            fast = await call(*args)
            set_fast(store, False)
            plain = await call(*args)
            set_fast(store, True)
            return fast, plain

        async def compare(checks: int) -> None:
            for i in range(checks):
                f = Filters(tenant=rng.choice(("", "", "t2")), query=rng.choice(QUERIES),
                            source=rng.choice((None, None, "db")), stream=rng.choice((None, None, None, "stderr")))
                if i % 5 == 0:
                    f.query, f.any_words = rng.choice(("", "cache")), ERROR_WORDS  # the chat's errors filter
                if rng.random() < 0.6:
                    f.from_ms = rng.randrange(start - 10 * MINUTE, end)
                    f.to_ms = f.from_ms + rng.choice((rng.randrange(0, 10 * MINUTE), rng.randrange(0, 300 * MINUTE)))
                if rng.random() < 0.3 and f.from_ms is not None:
                    f.from_ms = f.from_ms // MINUTE * MINUTE  # whole minutes at the edges
                    f.to_ms = f.to_ms // MINUTE * MINUTE - 1
                limit, offset = rng.choice(((50, 0), (20, 0), (10, 30), (7, 400)))
                fast, plain = await both(store.search, f, limit, offset)
                assert fast == plain, (f, limit, offset)
                fast, plain = await both(store.count, f)
                assert fast == plain, f
                window = f if f.from_ms is not None else Filters(**{**f.__dict__, "from_ms": start - MINUTE,
                                                                    "to_ms": end + MINUTE})
                bucket = rng.choice((MINUTE, 5 * MINUTE, 30 * MINUTE, 7_000, 3_600_000))
                fast, plain = await both(store.histogram, window, bucket)
                assert fast == plain, (window, bucket)

        run(compare(300), timeout=300)

        # The fast paths really answer: prefixes are spelled out, the histogram is counted over id ranges.
        conn = store._conn()
        assert store._words(conn, Filters(query="paym")).fts == '("payment" OR "payments" OR "paymentx")'
        assert store._words(conn, Filters(query="replica")).fts == '"replica"'
        assert store._words(conn, Filters(query="zeta")).fts == '"zeta"*'  # 11 words: left to the index
        assert store._words(conn, Filters(query="pa")).fts == '"pa"*'  # short: the prefix index answers
        assert store._words(conn, Filters(query="élan")).fts == '"élan"*'  # not ASCII: left as it is
        window = Filters(query="error", from_ms=start, to_ms=end)
        store.RANGE_MIN_IDS = 0
        assert store._counts_by_id_ranges(conn, store._words(conn, window), 30 * MINUTE) is not None
        # A word that begins nothing, a rarer word first whatever the order it was typed in.
        assert store._words(conn, Filters(query="nothingatall")).fts == '"nothingatall"*'
        common, rare = "cache", "fatal"
        by_reach = sorted((common, rare), key=lambda w: store._newest_matches_reach(conn, f'"{w}"'))
        assert store._words(conn, Filters(query=f"{by_reach[1]} {by_reach[0]}")).fts.startswith(f'"{by_reach[0]}"')

        # Retention's own deletions (oldest rows first) leave every path equal to the plain one.
        store.writer.stop()
        writer = sqlite3.connect(store.path, isolation_level=None)
        assert delete_oldest(writer, 1_500) == 1_500
        writer.close()
        assert_blocks_exact(store.path)
        run(compare(120), timeout=300)
    finally:
        store.close()


def test_counts_equal_a_count_made_in_python(tmp_path) -> None:
    """The plain path itself against Python: totals and histogram sums for prefixes and word pairs."""
    rng = random.Random(43)
    start = now_ms() - 2 * 60 * MINUTE
    rows = [r for r in random_rows(rng, start, 2_000) if r[0] == ""]
    store = make_store(tmp_path)
    try:
        add_entries(store, [entry(c, line, ts, s) for _, ts, c, s, line in rows])

        def want(f: Filters) -> int:
            *whole, prefix = f.query.split()
            return sum(1 for _, ts, c, s, line in rows
                       if (f.from_ms is None or f.from_ms <= ts <= f.to_ms) and f.source in (None, c)
                       and (words := line.split()) and all(w in words for w in whole)
                       and any(w.startswith(prefix) for w in words))

        async def check() -> None:
            for q in ("paym", "payment", "repl", "fatal upstream", "erro", "zeta", "cache payment"):
                for f in (Filters(query=q), Filters(query=q, source="web"),
                          Filters(query=q, from_ms=start + 20 * MINUTE, to_ms=start + 80 * MINUTE)):
                    n = want(f)
                    assert await store.count(f) == n, f
                    window = f if f.from_ms is not None else Filters(query=q, source=f.source, from_ms=start,
                                                                     to_ms=start + 3 * 60 * MINUTE)
                    assert (await store.histogram(window, 10 * MINUTE))[1] == want(window), window

        run(check(), timeout=120)
    finally:
        store.close()


def test_word_blocks_stay_exact_through_writes_and_retention(tmp_path, monkeypatch) -> None:
    """The writer's and retention's own functions, run in this process with blocks of 32 ids (so ranges have
    whole and partial blocks at both ends): after every batch and every deletion chunk each block equals the
    index's count, and searches, counts and histograms equal the plain path."""
    monkeypatch.setattr(wordcounts, "BLOCK_BITS", 5)
    monkeypatch.setattr(wordcounts, "BLOCK_IDS", 32)
    rng = random.Random(47)
    start = now_ms() - 3 * 60 * MINUTE
    rows = random_rows(rng, start, 3_000)
    directory = tmp_path / "search"
    directory.mkdir()
    path = str(directory / "logs.db")
    conn = connect(path)
    migrate(conn)
    streams = _Streams(conn, "container")
    shared = [0] * SHARED_SLOTS
    store = LogStore(SearchConfig(), str(directory))  # read paths only: its writer is this test
    try:
        next_id = 1
        for lo in range(0, len(rows), 250):
            for tenant in ("", "t2"):
                batch = [entry(c, line, ts, s) for t, ts, c, s, line in rows[lo:lo + 250] if t == tenant]
                next_id = write_batch(conn, streams, next_id, [(tenant, encode_entries(batch), len(batch))], shared)
            if lo == 750:
                assert {"payment", "replica"} <= set(wordcounts.choose_words(conn))
            assert_blocks_exact(path)
        end = max(r[1] for r in rows)

        def compare(checks: int) -> None:
            for _ in range(checks):
                f = Filters(tenant=rng.choice(("", "t2")), query=rng.choice(QUERIES + COUNTED_QUERIES * 3),
                            source=rng.choice((None, None, "db")))
                if rng.random() < 0.6:
                    f.from_ms = rng.randrange(start - 10 * MINUTE, end)
                    f.to_ms = f.from_ms + rng.randrange(0, 200 * MINUTE)
                window = f if f.from_ms is not None else Filters(**{**f.__dict__, "from_ms": start - MINUTE,
                                                                    "to_ms": end + MINUTE})
                bucket = rng.choice((MINUTE, 10 * MINUTE, 30_000))
                answers = []
                offset = rng.choice((0, 40))
                for on in (True, False):
                    set_fast(store, on)
                    answers.append((store._search(f, 20, offset), store._count(f),
                                    store._histogram(window, bucket)))
                assert answers[0] == answers[1], (f, bucket)

        compare(150)
        for _ in range(4):
            assert delete_oldest(conn, rng.randrange(50, 400)) > 0
            assert_blocks_exact(path)
        compare(100)
        assert wordcounts.count_matches(conn, "payment", -(1 << 63), (1 << 63) - 1) == conn.execute(
            "SELECT count(*) FROM logs_fts WHERE logs_fts MATCH 'payment'").fetchone()[0] > 0
        assert wordcounts.check(conn)  # the stamp matches: a writer restarting here keeps the counts

        # A writer of an older version writes, or its retention deletes, without keeping the blocks: the next
        # writer to start forgets the counted words, and choosing them again fills them exactly.
        for older in ("write", "delete"):
            with monkeypatch.context() as m:
                m.setattr(wordcounts, "after_insert", lambda *_: None)
                m.setattr(wordcounts, "after_delete", lambda *_: None)
                m.setattr(wordcounts, "stamp", lambda *_: None)
                if older == "write":
                    batch = [entry("web", "late payment replica", end + 1)]
                    next_id = write_batch(conn, streams, next_id, [("", encode_entries(batch), 1)], shared)
                else:
                    assert delete_oldest(conn, 10) == 10
            assert not wordcounts.check(conn) and wordcounts.words(conn) == []
            assert {"payment", "replica"} <= set(wordcounts.choose_words(conn))
            assert_blocks_exact(path)
            assert wordcounts.check(conn)
        compare(30)
    finally:
        store.close()
        conn.close()
