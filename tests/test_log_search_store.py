"""The log store: exact counts at scale, retention by age and size, the bounded write queue, config."""

from __future__ import annotations

import os
import time
import urllib.parse

import pytest

from service.config.errors import ConfigError
from service.config.schema import loads
from service.logs.search.config import SearchConfig, max_size_bytes
from service.logs.search.query import Filters, fts_expression
from service.logs.search.schema import connect, used_bytes
from tests.helpers.aio import run
from tests.helpers.log_search_helpers import Entry, add_entries, entry, make_store, now_ms, request, search_app, serve
from tests.helpers.polling import wait_for


def test_fifty_thousand_entries_counts_are_exact(tmp_path):
    store = make_store(tmp_path)
    t0 = now_ms() - 50_000_000
    names = ["web", "worker", "cron", "db", "cache"]
    entries = [entry(names[i % 5], f"line {i} " + ("boom" if i % 7 == 0 else "fine"), t0 + i * 1000)
               for i in range(50_000)]
    add_entries(store, entries)
    try:
        with serve(search_app(store)) as base:
            def get(path: str, **params):
                return request(f"{base}{path}?{urllib.parse.urlencode(params)}")[1]["data"]

            assert get("/api/logs/search")["total"] == 50_000
            assert get("/api/logs/search", query="boom")["total"] == len(range(0, 50_000, 7))
            assert get("/api/logs/search", container="db", query="boom")["total"] == sum(
                1 for i in range(50_000) if i % 5 == 3 and i % 7 == 0)
            assert {c["name"]: c["count"] for c in get("/api/logs/containers")} == {n: 10_000 for n in names}
            h = get("/api/logs/histogram", fromTimestamp=t0, toTimestamp=t0 + 50_000_000 - 1, bucket=3_600_000)
            assert h["total"] == 50_000 and sum(b["count"] for b in h["buckets"]) == 50_000
            inside = [b for b in h["buckets"] if b["timestamp"] >= t0 // 3_600_000 * 3_600_000 + 3_600_000]
            assert inside[0]["count"] == 3600  # a whole hour inside the window holds one line per second
            last = get("/api/logs/search", limit=100, offset=49_950)
            assert last["returned"] == 50 and last["logs"][-1]["timestamp"] == t0
    finally:
        store.close()


def test_retention_by_age_deletes_old_entries_on_schedule(tmp_path):
    # 8 s of retention left after the write: the first count must see all 150 even on a loaded machine
    store = make_store(tmp_path, retention=9.0, retention_interval=0.1)
    try:
        now = now_ms()
        add_entries(store, [entry("a", f"old {i}", now - 1_000 + i) for i in range(100)]
                    + [entry("a", f"new {i}", now + 60_000 + i) for i in range(50)])

        def count(**kw) -> int:
            return run(store.count(Filters(**kw)))

        # All written (counting them would race retention: on a busy machine writing can take past the cutoff).
        assert store.writer.written == 150
        wait_for(lambda: count() == 50, 60, what="old entries deleted")  # ~8 s after they were written
        assert count(query="old") == 0 and count(query="new") == 50
        assert run(store.sources(""))[0]["count"] == 50
        assert store.retention.deleted["age"] == 100
    finally:
        store.close()


def test_size_limit_holds(tmp_path):
    store = make_store(tmp_path, max_size="1MiB", retention_interval=0.05)
    batches, per_batch = 10, 2_000
    written = batches * per_batch  # ~4 MiB with the index: 4x the limit
    try:
        now = now_ms()
        for batch in range(batches):
            store.add([entry("noisy", f"payload {batch} {i} " + "abcdefgh " * 20, now + batch * 10_000 + i)
                       for i in range(per_batch)], "")
        assert store.flush(120)
        reader = connect(store.path, readonly=True)
        wait_for(lambda: used_bytes(reader) <= 1024 * 1024, 120, what="size under max_size")
        reader.close()
        # Retention keeps deleting down to its low-water mark in chunks (its counter is raised just before each
        # delete commits): once it has stopped, the rows left, the per-source count and the deletions agree.
        def settled() -> int | None:
            remaining = run(store.count(Filters()))
            agree = (run(store.sources(""))[0]["count"] == remaining
                     and remaining + store.retention.deleted["size"] == written
                     and run(store.count(Filters())) == remaining)
            return remaining if agree else None

        remaining = wait_for(settled, 120, what="retention done, counts agreeing")
        assert 0 < remaining < written
        newest = run(store.search(Filters(), 1))[1][0]
        assert newest["timestamp"] == now + (batches - 1) * 10_000 + per_batch - 1  # the oldest went first
        # Freed pages are returned to the file system.
        wait_for(lambda: os.path.getsize(store.path) <= 2 * 1024 * 1024, 60, what="file shrunk")
    finally:
        store.close()


def test_direct_adds_are_never_dropped(tmp_path):
    """Entries fed directly wait for the writer however many there are (a node's store bounds what it reads
    from the WAL instead, see test_log_search_node.py)."""
    store = make_store(tmp_path, max_queue_entries=1_000)
    try:
        store.writer.stop()  # nothing drains now
        t = now_ms()
        started = time.perf_counter()
        for b in range(10):
            store.add([entry("x", f"b{b} {i}", t + i) for i in range(300)], "")
        assert time.perf_counter() - started < 0.5  # add() only enqueues
        assert store.writer.queued == 3_000 and "droppedEntries" not in store.status()
        store.writer.start()
        assert store.flush(10)
        assert run(store.count(Filters(query="b9"))) == 300 and run(store.count(Filters(query="b0"))) == 300
        assert run(store.count(Filters())) == 3_000
    finally:
        store.close()


def test_fts_expression_quotes_every_token():
    assert fts_expression('a "b" OR NEAR(c') == '"a" AND """b""" AND "OR" AND "NEAR(c"*'
    assert fts_expression("* ; --") is None


def test_config_decoding():
    cfg = loads(SearchConfig, "retention: 3d\nmax_size: 512MiB\nsource_label: app\nchat:\n  url: http://x/v1\n"
                              "  model: m\n  api_key_env: KEY\n")
    assert cfg.retention == 3 * 86400 and cfg.max_size_bytes == 512 * 1024**2 and cfg.source_label == "app"
    assert cfg.chat.model == "m" and cfg.enabled is True
    assert loads(SearchConfig, "enabled: false\n").max_size_bytes == 1024**3
    assert max_size_bytes("1GB") == 10**9 and max_size_bytes("1048576") == 1 << 20
    for bad in ("max_size: lots\n", "unknown: 1\n", "chat:\n  url: ftp://x\n", "chat:\n  url: http://x\n",
                "retention: 5\n"):
        with pytest.raises(ConfigError):
            loads(SearchConfig, bad)
    assert SearchConfig().directory("/data", "a/../b").startswith("/data/search/a_.._b-")


def test_source_falls_back_to_job_and_custom_label(tmp_path):
    store = make_store(tmp_path, source_label="app")
    try:
        add_entries(store, [Entry({"job": "varlogs"}, now_ms() * 1_000_000, "from a job"),
                            Entry({"app": "shop", "job": "ignored"}, now_ms() * 1_000_000, "from an app")])
        assert sorted(s["name"] for s in run(store.sources(""))) == ["shop", "varlogs"]
    finally:
        store.close()


def test_word_counts_stay_exact_across_tenants_and_plans(tmp_path, monkeypatch):
    """Totals counted in the FTS index alone (one tenant) and through the join (several tenants, filters)
    agree with the data; pages driven from few matches and from the newest rows return the same entries."""
    store = make_store(tmp_path)
    try:
        t0 = now_ms()
        add_entries(store, [entry("a", f"boom {i}" if i % 3 == 0 else f"calm {i}", t0 + i) for i in range(3_000)])
        assert run(store.count(Filters(query="boom"))) == 1_000  # one tenant: the index alone
        add_entries(store, [entry("b", f"boom other {i}", t0 + i) for i in range(500)], tenant="t2")
        assert run(store.count(Filters(query="boom"))) == 1_000  # two tenants: joined, still exact
        assert run(store.count(Filters(tenant="t2", query="boom"))) == 500
        assert run(store.count(Filters(query="boom", from_ms=t0, to_ms=t0 + 299))) == 100
        assert run(store.count(Filters(any_words=("boom",), source="a"))) == 1_000
        many = run(store.search(Filters(query="boom"), 20, 5))
        monkeypatch.setattr(store, "FEW_MATCHES", 0)
        assert run(store.search(Filters(query="boom"), 20, 5)) == many
        assert [e["timestamp"] for e in many[1]] == [t0 + i for i in range(2_982, -1, -3)][:20]
    finally:
        store.close()


def test_push_bytes_are_written_by_the_writer_process(tmp_path):
    """add_push hands the snappy PushRequest as it is; the process decodes it and counts what it wrote."""
    from service.logs.search.store import encode_entries

    store = make_store(tmp_path)
    try:
        t = now_ms()
        store.add_push("", encode_entries([entry("p", f"pushed {i}", t + i) for i in range(250)]), 250)
        assert store.flush(30)
        assert run(store.count(Filters(query="pushed", source="p"))) == 250 and store.writer.written == 250
        assert store.writer._proc.pid != os.getpid()
    finally:
        store.close()


def test_writer_survives_any_push(tmp_path):
    """Pushes the ingest path would refuse (out-of-range times, undecodable bytes) reach the writer directly:
    what it cannot hold is skipped and counted, the rest of the push and every later push are written."""
    from service.logs.search.store import encode_entries
    from service.proto.push_pb2 import PushRequest

    store = make_store(tmp_path)
    try:
        t = now_ms()
        req = PushRequest()
        s = req.streams.add(labels='{container="odd"}')
        for seconds in (2**62, -(2**62), t // 1000):
            e = s.entries.add(line=f"at {seconds}")
            e.timestamp.seconds = seconds
        import snappy

        store.add_push("", snappy.compress(req.SerializeToString()), 3)
        store.add_push("", b"not snappy at all", 4)
        store.add_push("", snappy.compress(b"\xff\xff\xff"), 5)  # snappy, not protobuf
        store.add_push("", encode_entries([entry("p", f"later {i}", t + i) for i in range(10)]), 10)
        assert store.flush(30)
        assert run(store.count(Filters(source="odd"))) == 1
        assert run(store.count(Filters(query="later", source="p"))) == 10
        status = store.status()
        assert status["skippedEntries"] == 2 + 4 + 5 and status["healthy"] is True
        assert store.writer.alive and store.writer.restarts == 0
    finally:
        store.close()
