"""EtcdKV against a real etcd that goes away and comes back, several endpoints, auth and TLS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from aetcd import rpc

from service.kv.etcd import EtcdKV
from service.kv.store import MAX_TXN_OPS, EventType, KVError, KVUnavailable, ListPage
from tests.helpers.aio import run, take
from tests.helpers.certs import make_certs
from tests.helpers.etcd_server import EtcdServer, free_port
from tests.helpers.polling import wait_until

REQUEST_TIMEOUT = 1.0


async def _all_unavailable(kv: EtcdKV) -> None:
    """Every kind of operation fails with KVUnavailable, each within the request timeout."""
    operations = [kv.get("k"), kv.list("p/"), kv.put("k", b"v"), kv.delete("k"),
                  kv.compare_and_swap("k", b"v", expected_mod_revision=0), kv.grant_lease(5)]
    for op in operations:
        started = time.monotonic()
        with pytest.raises(KVUnavailable):
            await op
        assert time.monotonic() - started < REQUEST_TIMEOUT + 0.5


async def _reachable(kv: EtcdKV) -> bool:
    try:
        await kv.get("probe")
    except KVUnavailable:
        return False
    return True


def test_start_does_not_wait_for_an_unreachable_etcd() -> None:
    async def body() -> None:
        kv = EtcdKV([f"127.0.0.1:{free_port()}"], request_timeout=REQUEST_TIMEOUT)
        started = time.monotonic()
        await kv.start()
        assert time.monotonic() - started < 0.5
        try:
            await _all_unavailable(kv)
        finally:
            await kv.close()

    run(body())


def test_unavailable_while_stopped_then_ops_and_watch_resume(etcd: EtcdServer) -> None:
    async def body() -> None:
        kv = EtcdKV([etcd.endpoint], request_timeout=REQUEST_TIMEOUT)
        await kv.start()
        try:
            r1 = await kv.put("cfg/a", b"1")
            watch = kv.watch("cfg/", start_revision=r1)
            assert [e.revision for e in await take(watch, 1)] == [r1]
            lease = await kv.grant_lease(30)

            etcd.stop()
            await _all_unavailable(kv)
            with pytest.raises(KVUnavailable):
                await lease.keepalive_once()
            etcd.start()

            # write at once, while the watch may still be reconnecting: it must miss nothing
            r2 = await _put_when_reachable(kv, "cfg/b", b"2")
            r3 = await kv.put("cfg/a", b"3")
            assert await kv.delete("cfg/b")
            events = await take(watch, 3)
            assert [(e.type, e.key, e.revision) for e in events[:2]] == [
                (EventType.PUT, "cfg/b", r2), (EventType.PUT, "cfg/a", r3)]
            assert (events[2].type, events[2].key) == (EventType.DELETE, "cfg/b")
            assert r1 < r2 < r3 < events[2].revision
            await lease.keepalive_once()  # the lease outlived the outage
            await watch.aclose()  # type: ignore[attr-defined]
        finally:
            await kv.close()

    run(body())


async def _put_when_reachable(kv: EtcdKV, key: str, value: bytes, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await kv.put(key, value)
        except KVUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


def test_watch_from_now_survives_an_outage_before_its_first_event(etcd: EtcdServer) -> None:
    async def body() -> None:
        kv = EtcdKV([etcd.endpoint], request_timeout=REQUEST_TIMEOUT)
        await kv.start()
        try:
            watch = kv.watch("now/")
            pending = asyncio.ensure_future(anext(watch))
            await wait_until(lambda: _watching(etcd), what="watch registered at the current revision")
            etcd.stop()
            etcd.start()
            revision = await _put_when_reachable(kv, "now/x", b"1")
            event = await asyncio.wait_for(pending, 10)
            assert (event.key, event.revision) == ("now/x", revision)
            await watch.aclose()  # type: ignore[attr-defined]
        finally:
            await kv.close()

    run(body())


async def _watching(etcd: EtcdServer) -> bool:
    """etcd counts its watchers in its metrics."""
    loop = asyncio.get_running_loop()

    def read() -> bytes:
        import urllib.request

        with urllib.request.urlopen(f"http://{etcd.endpoint}/metrics", timeout=2) as resp:
            return bytes(resp.read())

    for line in (await loop.run_in_executor(None, read)).splitlines():
        if line.startswith(b"etcd_debugging_mvcc_watcher_total "):
            return float(line.split()[1]) >= 1
    return False


def test_fails_over_past_a_dead_endpoint(etcd: EtcdServer) -> None:
    async def body() -> None:
        kv = EtcdKV([f"127.0.0.1:{free_port()}", f"http://{etcd.endpoint}"], request_timeout=REQUEST_TIMEOUT)
        await kv.start()
        try:
            for i in range(3):
                revision = await kv.put(f"k{i}", b"v")
                pair = await kv.get(f"k{i}")
                assert pair is not None and pair.mod_revision == revision
            watch = kv.watch("k", start_revision=1)
            assert [e.key for e in await take(watch, 3)] == ["k0", "k1", "k2"]
            await watch.aclose()  # type: ignore[attr-defined]
        finally:
            await kv.close()

    run(body())


async def _enable_auth(endpoint: str, password: str) -> None:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        auth = rpc.AuthStub(channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password), timeout=5)
        try:
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            if "already exists" not in (exc.details() or ""):
                raise
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
        await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=5)


def test_auth_and_reauthentication_after_restart(etcd: EtcdServer) -> None:
    async def body() -> None:
        await _enable_auth(etcd.endpoint, "s3cret")
        kv = EtcdKV([etcd.endpoint], username="root", password="s3cret", request_timeout=REQUEST_TIMEOUT)
        wrong = EtcdKV([etcd.endpoint], username="root", password="nope", request_timeout=REQUEST_TIMEOUT)
        anonymous = EtcdKV([etcd.endpoint], request_timeout=REQUEST_TIMEOUT)
        for store in (kv, wrong, anonymous):
            await store.start()
        try:
            r1 = await kv.put("secure/a", b"1")
            with pytest.raises(KVError):
                await wrong.get("secure/a")
            with pytest.raises(KVError):
                await anonymous.get("secure/a")
            watch = kv.watch("secure/", start_revision=r1)
            assert [e.revision for e in await take(watch, 1)] == [r1]
            etcd.stop()  # simple tokens do not survive a restart: the client must log in again
            etcd.start()
            r2 = await _put_when_reachable(kv, "secure/b", b"2")
            assert [e.revision for e in await take(watch, 1)] == [r2]
            await watch.aclose()  # type: ignore[attr-defined]
        finally:
            for store in (kv, wrong, anonymous):
                await store.close()

    run(body())


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server = EtcdServer(tmp_path / "etcd", scheme="https", extra_args=[
        "--cert-file", str(certs["server.crt"]), "--key-file", str(certs["server.key"]),
        "--client-cert-auth", "--trusted-ca-file", str(certs["ca.crt"])])
    server.start()

    async def body() -> None:
        kv = EtcdKV([f"https://{server.endpoint}"], ca_file=str(certs["ca.crt"]),
                    cert_file=str(certs["client.crt"]), key_file=str(certs["client.key"]),
                    request_timeout=REQUEST_TIMEOUT)
        no_client_cert = EtcdKV([f"https://{server.endpoint}"], ca_file=str(certs["ca.crt"]),
                                request_timeout=REQUEST_TIMEOUT)
        await kv.start()
        await no_client_cert.start()
        try:
            await wait_until(lambda: _reachable(kv), what="TLS connection")
            revision = await kv.put("tls/a", b"1")
            pair = await kv.get("tls/a")
            assert pair is not None and pair.mod_revision == revision
            with pytest.raises(KVUnavailable):
                await no_client_cert.get("tls/a")
        finally:
            await kv.close()
            await no_client_cert.close()

    try:
        run(body())
    finally:
        server.remove()


def test_list_of_more_keys_than_a_page_is_one_snapshot_under_concurrent_writes(etcd: EtcdServer) -> None:
    """2,500 keys (a first page of LIST_PAGE_SIZE, then pages sized by bytes) listed while another task
    keeps changing, adding and deleting keys under the prefix, and a key changes between every two pages:
    every key once, exactly as one unpaginated range at the listing's revision shows them."""
    async def body() -> None:
        kv = EtcdKV([etcd.endpoint], request_timeout=5.0)
        await kv.start()
        try:
            names = [f"many/{i:05d}" for i in range(2500)]
            for i in range(0, len(names), MAX_TXN_OPS):
                assert await kv.compare_and_swap_many([(n, b"x" * 200, 0) for n in names[i:i + MAX_TXN_OPS]])
            pages = 0
            list_page = kv.list_page

            async def counted(prefix: str, **kwargs: object) -> ListPage:
                nonlocal pages
                pages += 1
                page = await list_page(prefix, **kwargs)  # type: ignore[arg-type]
                # and for certain between two pages: a listed key changes, one not yet listed goes
                await kv.put(names[0], f"after page {pages}".encode())
                await kv.delete(names[-pages])
                return page

            kv.list_page = counted  # type: ignore[method-assign]
            stop = asyncio.Event()
            writes = 0

            async def writer() -> None:
                nonlocal writes
                while not stop.is_set():
                    await kv.put(names[writes % len(names)], f"w{writes}".encode())
                    await kv.put(f"many/new{writes:05d}", b"n")
                    await kv.delete(names[-1 - writes % 100])
                    writes += 1

            task = asyncio.ensure_future(writer())
            try:
                await wait_until(lambda: writes >= 3, what="writes under way")
                listing = await kv.list("many/")
                writes_during = writes
            finally:
                stop.set()
                await task
            assert pages >= 2 and writes_during >= 3
            keys = [p.key for p in listing.pairs]
            assert keys == sorted(set(keys))  # each once, in order
            async with grpc.aio.insecure_channel(etcd.endpoint) as channel:
                reference = await rpc.KVStub(channel).Range(rpc.RangeRequest(
                    key=b"many/", range_end=b"many0", revision=listing.revision), timeout=10)
            assert [(p.key, p.value, p.mod_revision) for p in listing.pairs] == [
                (kv_.key.decode(), kv_.value, kv_.mod_revision) for kv_ in reference.kvs]
            assert (await kv.list("many/")).revision > listing.revision  # the writes did land meanwhile
        finally:
            await kv.close()

    run(body(), timeout=120)
