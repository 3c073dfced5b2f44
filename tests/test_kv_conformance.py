"""One suite, every KVStore backend: MemoryKV, EmbeddedKV (SQLite file) and EtcdKV (a real etcd)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aetcd import rpc

from service.kv.embedded import EmbeddedKV
from service.kv.etcd import EtcdKV
from service.kv.memory import MemoryKV
from service.kv.paging import list_paged
from service.kv.store import MAX_TXN_OPS, EventType, KVError, KVStore, LeaseExpired, ListPage, WatchEvent
from tests.helpers.aio import run, take
from tests.helpers.polling import wait_until


@dataclass
class Backend:
    name: str
    make: Callable[[], KVStore]
    compact: Callable[[KVStore, int], Awaitable[None]]

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[KVStore]:
        store = self.make()
        await store.start()
        try:
            yield store
        finally:
            await store.close()


async def _compact_local(store: KVStore, revision: int) -> None:
    assert isinstance(store, MemoryKV)
    store.compact(revision)


def _etcd_compactor(endpoint: str) -> Callable[[KVStore, int], Awaitable[None]]:
    async def compact(_store: KVStore, revision: int) -> None:
        async with grpc.aio.insecure_channel(endpoint) as channel:
            request = rpc.CompactionRequest(revision=revision, physical=True)
            await rpc.KVStub(channel).Compact(request, timeout=5)

    return compact


@pytest.fixture(params=["memory", "embedded", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return Backend("memory", MemoryKV, _compact_local)
    if request.param == "embedded":
        return Backend("embedded", lambda: EmbeddedKV(str(tmp_path / "kv" / "store.db")), _compact_local)
    server = request.getfixturevalue("etcd")
    return Backend("etcd", lambda: EtcdKV([server.endpoint], request_timeout=2.0),
                   _etcd_compactor(server.endpoint))


def test_put_get_delete_and_revisions(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            assert await kv.get("a") is None
            r1 = await kv.put("a", b"one")
            r2 = await kv.put("b", b"two")
            r3 = await kv.put("a", b"three")
            assert r1 < r2 < r3
            pair = await kv.get("a")
            assert pair is not None
            assert (pair.key, pair.value, pair.create_revision, pair.mod_revision) == ("a", b"three", r1, r3)
            assert await kv.delete("a") is True
            assert await kv.delete("a") is False
            assert await kv.get("a") is None
            r4 = await kv.put("a", b"again")
            pair = await kv.get("a")
            assert pair is not None and pair.create_revision == pair.mod_revision == r4 > r3

    run(body())


def test_list_prefix_sorted_with_revision(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            await kv.put("cfg/b", b"2")
            await kv.put("cfg/a", b"1")
            await kv.put("cfgx", b"not under cfg/")
            last = await kv.put("other/c", b"3")
            listing = await kv.list("cfg/")
            assert [(p.key, p.value) for p in listing.pairs] == [("cfg/a", b"1"), ("cfg/b", b"2")]
            assert listing.revision == last
            assert [p.key for p in (await kv.list("")).pairs] == ["cfg/a", "cfg/b", "cfgx", "other/c"]
            assert (await kv.list("none/")).pairs == []

    run(body())


def test_get_many_reads_the_keys_that_exist(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            r1 = await kv.put("g/a", b"1")
            r2 = await kv.put("g/c", b"3")
            got = await kv.get_many(["g/a", "g/b", "g/c"])
            assert {k: (p.value, p.mod_revision) for k, p in got.items()} == {"g/a": (b"1", r1), "g/c": (b"3", r2)}
            assert await kv.get_many([]) == {}
            with pytest.raises(KVError):
                await kv.get_many([f"g/{i}" for i in range(MAX_TXN_OPS + 1)])

    run(body())


def test_list_page_walks_a_prefix_in_key_order(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            names = [f"pg/{i:03d}" for i in range(25)]
            for chunk in (names[i:i + MAX_TXN_OPS] for i in range(0, len(names), MAX_TXN_OPS)):
                assert await kv.compare_and_swap_many([(n, n.encode(), 0) for n in chunk])
            await kv.put("pgx", b"beside the prefix")
            first = await kv.list_page("pg/", limit=10)
            assert [p.key for p in first.pairs] == names[:10] and first.more
            second = await kv.list_page("pg/", after=first.pairs[-1].key, limit=10, revision=first.revision)
            assert [p.key for p in second.pairs] == names[10:20] and second.more
            assert second.revision == first.revision
            last = await kv.list_page("pg/", after=second.pairs[-1].key, limit=10, revision=first.revision)
            assert [p.key for p in last.pairs] == names[20:] and not last.more
            listing = await list_paged(kv, "pg/", page_size=7, max_page=7)
            assert [(p.key, p.value) for p in listing.pairs] == [(n, n.encode()) for n in names]
            assert listing.revision == first.revision

    run(body())


def test_list_paged_is_one_snapshot_while_writes_happen(backend: Backend) -> None:
    """After each of the first two pages a key already listed changes, one not yet listed is deleted and a new
    one is added: the listing still shows the prefix exactly as it was at the revision it reports."""
    async def body() -> None:
        async with backend.opened() as kv:
            names = [f"s/{i:03d}" for i in range(40)]
            assert await kv.compare_and_swap_many([(n, b"v0", 0) for n in names])
            before = {p.key: p.value for p in (await kv.list("s/")).pairs}
            pages = 0
            list_page = kv.list_page

            async def page_then_write(prefix: str, **kwargs: object) -> ListPage:
                nonlocal pages
                page = await list_page(prefix, **kwargs)  # type: ignore[arg-type]
                pages += 1
                if pages <= 2:
                    await kv.put(names[0], f"v{pages}".encode())
                    await kv.delete(names[-pages])
                    await kv.put(f"s/new{pages}", b"n")
                return page

            kv.list_page = page_then_write  # type: ignore[method-assign]
            listing = await list_paged(kv, "s/", page_size=10, max_page=10)
            got = [(p.key, p.value) for p in listing.pairs]
            assert len({k for k, _ in got}) == len(got)  # each key once
            if backend.name == "etcd":  # one pass at the first page's revision: what was there before any write
                assert pages == 4
                assert got == sorted(before.items())
            else:  # only current values are kept: the listing starts over, and shows the state after the writes
                now = await kv.list("s/")
                assert got == [(p.key, p.value) for p in now.pairs] and listing.revision == now.revision
                assert ("s/new2", b"n") in got and (names[-1], b"v0") not in got

    run(body())


def test_compare_and_swap(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            assert await kv.compare_and_swap("k", b"v1", expected_mod_revision=0) is True  # create-only
            assert await kv.compare_and_swap("k", b"v2", expected_mod_revision=0) is False
            pair = await kv.get("k")
            assert pair is not None and pair.value == b"v1"
            assert await kv.compare_and_swap("k", b"v2", expected_mod_revision=pair.mod_revision) is True
            stale = pair.mod_revision
            assert await kv.compare_and_swap("k", b"v3", expected_mod_revision=stale) is False
            current = await kv.get("k")
            assert current is not None and current.value == b"v2"
            assert current.create_revision == pair.create_revision
            assert await kv.compare_and_swap("k", None, expected_mod_revision=pair.mod_revision) is False
            assert await kv.get("k") is not None
            assert await kv.compare_and_swap("k", None, expected_mod_revision=current.mod_revision) is True
            assert await kv.get("k") is None

    run(body())


def test_compare_and_swap_many_is_all_or_nothing(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            lease = await kv.grant_lease(30)
            ops = [(f"m/{i}", b"v", 0) for i in range(MAX_TXN_OPS)]
            assert await kv.compare_and_swap_many(ops, lease=lease) is True
            assert len((await kv.list("m/")).pairs) == MAX_TXN_OPS
            assert all(p.lease == lease.id for p in (await kv.list("m/")).pairs)
            assert await kv.compare_and_swap_many([("n/new", b"v", 0), ("m/0", b"v", 0)]) is False
            assert await kv.get("n/new") is None  # nothing of a failed transaction is written
            held = {p.key: p.mod_revision for p in (await kv.list("m/")).pairs}
            assert await kv.compare_and_swap_many([(k, None, r) for k, r in held.items()][:2]) is True
            assert len((await kv.list("m/")).pairs) == MAX_TXN_OPS - 2
            await lease.revoke()

    run(body())


def test_lease_expiry_deletes_its_keys(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            lease = await kv.grant_lease(1)
            await kv.put("members/n1", b"alive", lease=lease)
            await kv.put("members/static", b"stays")
            pair = await kv.get("members/n1")
            assert pair is not None and pair.lease == lease.id

            async def gone() -> bool:
                return await kv.get("members/n1") is None

            await wait_until(gone, timeout=lease.ttl + 5, what="leased key deleted")
            assert await kv.get("members/static") is not None
            with pytest.raises(LeaseExpired):
                await lease.keepalive_once()
            with pytest.raises(LeaseExpired):
                await kv.put("members/n1", b"late", lease=lease)

    run(body())


def test_keepalive_keeps_leased_keys(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            lease = await kv.grant_lease(1)
            await kv.put("members/n1", b"alive", lease=lease)
            until = time.monotonic() + 1.6 * lease.ttl
            while time.monotonic() < until:  # refreshing at a third of the TTL is the behaviour under test
                await lease.keepalive_once()
                assert await kv.get("members/n1") is not None
                await asyncio.sleep(lease.ttl / 3)
            await lease.revoke()
            assert await kv.get("members/n1") is None
            with pytest.raises(LeaseExpired):
                await lease.keepalive_once()
            await lease.revoke()  # revoking a gone lease is a no-op

    run(body())


async def _watch_until(kv: KVStore, prefix: str, start: int, n: int) -> list[WatchEvent]:
    watch = kv.watch(prefix, start_revision=start)
    try:
        return await take(watch, n)
    finally:
        await watch.aclose()  # type: ignore[attr-defined]


def test_watch_sees_puts_and_deletes_in_order(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            start = (await kv.list("w/")).revision + 1
            watch = kv.watch("w/", start_revision=start)
            first = asyncio.ensure_future(anext(watch))
            r1 = await kv.put("w/a", b"1")
            await kv.put("elsewhere", b"x")
            r2 = await kv.put("w/b", b"2")
            await kv.delete("w/a")
            r4 = await kv.put("w/b", b"3")
            events = [await asyncio.wait_for(first, 10), *await take(watch, 3)]
            await watch.aclose()  # type: ignore[attr-defined]
            assert [(e.type, e.key, e.value) for e in events] == [
                (EventType.PUT, "w/a", b"1"), (EventType.PUT, "w/b", b"2"),
                (EventType.DELETE, "w/a", b""), (EventType.PUT, "w/b", b"3")]
            assert [events[0].revision, events[1].revision, events[3].revision] == [r1, r2, r4]
            assert events[1].revision < events[2].revision < events[3].revision

    run(body())


def test_watch_from_revision_replays_history(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            r1 = await kv.put("h/a", b"1")
            await kv.put("h/b", b"2")
            await kv.delete("h/a")
            events = await _watch_until(kv, "h/", r1, 3)
            assert [(e.type, e.key) for e in events] == [
                (EventType.PUT, "h/a"), (EventType.PUT, "h/b"), (EventType.DELETE, "h/a")]
            later = await _watch_until(kv, "h/", r1 + 1, 2)
            assert later == events[1:]

    run(body())


def test_watch_below_compacted_history_raises(backend: Backend) -> None:
    async def body() -> None:
        async with backend.opened() as kv:
            r1 = await kv.put("c/a", b"1")
            r2 = await kv.put("c/a", b"2")
            r3 = await kv.put("c/a", b"3")
            await backend.compact(kv, r2)
            with pytest.raises(KVError):
                await _watch_until(kv, "c/", r1, 1)
            assert [e.revision for e in await _watch_until(kv, "c/", r3, 1)] == [r3]

    run(body())


def test_embedded_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")

    async def body() -> None:
        kv = EmbeddedKV(path)
        await kv.start()
        r1 = await kv.put("cfg/a", b"1")
        lease = await kv.grant_lease(60)
        await kv.put("members/n1", b"alive", lease=lease)
        r3 = await kv.put("cfg/b", b"2")
        await kv.close()

        kv = EmbeddedKV(path)
        await kv.start()
        try:
            listing = await kv.list("cfg/")
            assert [(p.key, p.value, p.create_revision) for p in listing.pairs] == [
                ("cfg/a", b"1", r1), ("cfg/b", b"2", r3)]
            assert await kv.get("members/n1") is None  # its lease died with the previous process
            assert (await kv.list("")).revision > r3  # that deletion took a revision of its own
            assert await kv.put("cfg/c", b"3") > listing.revision
            with pytest.raises(KVError):  # in-memory history did not survive; older starts are compacted
                await _watch_until(kv, "cfg/", r1, 1)
        finally:
            await kv.close()

    run(body())


_WRITER = """
import asyncio, sys
from service.kv.embedded import EmbeddedKV

async def main():
    kv = EmbeddedKV(sys.argv[1])
    await kv.start()
    i = 0
    while True:
        revision = await kv.put(f"k/{i}", str(i).encode())
        print(i, revision, flush=True)  # acknowledged
        i += 1

asyncio.run(main())
"""


def test_embedded_acknowledged_puts_survive_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    repo = Path(__file__).resolve().parent.parent
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True,
                              cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    acknowledged: list[tuple[int, int]] = []
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            index, revision = map(int, line.split())
            acknowledged.append((index, revision))
            if len(acknowledged) == 200:
                break
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
    assert len(acknowledged) == 200, "writer exited early"

    async def body() -> None:
        kv = EmbeddedKV(path)
        await kv.start()
        try:
            for index, revision in acknowledged:
                pair = await kv.get(f"k/{index}")
                assert pair is not None and pair.value == str(index).encode()
                assert pair.mod_revision == revision
            assert (await kv.list("")).revision >= acknowledged[-1][1]
        finally:
            await kv.close()

    run(body())


def test_later_pages_are_sized_by_bytes() -> None:
    """Small keys: pages grow to MAX_PAGE (etcd 3.4 walks the rest of the range once per page, so fewer pages
    are cheaper); large values: pages shrink to about PAGE_BYTES, never below the first page's size."""
    from service.kv import paging
    from service.kv.store import KVPair

    small = [KVPair(f"c/{i}", b"x" * 100, 1, 1) for i in range(10)]
    assert paging.next_page_size(small, 1000) == paging.MAX_PAGE
    large = [KVPair(f"c/{i}", b"x" * 2000, 1, 1) for i in range(10)]
    assert paging.next_page_size(large, 1000) == paging.PAGE_BYTES // (2000 + 3)
    huge = [KVPair("c/0", b"x" * paging.PAGE_BYTES, 1, 1)]
    assert paging.next_page_size(huge, 1000) == 1000
