"""KVStore over etcd v3 (gRPC through aetcd's generated stubs; connection handling in etcd_conn)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence

import grpc
from aetcd import rpc
from aetcd.utils import prefix_range_end

from service.kv.etcd_conn import Endpoint, EtcdConnection, Metadata, map_error
from service.kv.paging import list_paged
from service.kv.store import (
    LIST_PAGE_SIZE,
    MAX_TXN_OPS,
    Compacted,
    EventType,
    KVError,
    KVPair,
    KVUnavailable,
    Lease,
    LeaseExpired,
    ListPage,
    ListResult,
    WatchEvent,
)
from service.log import get_logger

_log = get_logger("kv")

_WATCH_BACKOFF_MIN = 0.05
_WATCH_BACKOFF_MAX = 1.0


def _key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _range_end(prefix: str) -> bytes:
    return prefix_range_end(_key(prefix)) if prefix else b"\0"  # b"\0": every key


def _pair(kv: rpc.KeyValue) -> KVPair:
    return KVPair(kv.key.decode("utf-8", "surrogateescape"), bytes(kv.value), kv.create_revision,
                  kv.mod_revision, kv.lease)


class EtcdLease:
    def __init__(self, store: EtcdKV, lease_id: int, ttl: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self._store = store

    async def keepalive_once(self) -> None:
        await self._store.keepalive_lease(self.id)

    async def revoke(self) -> None:
        await self._store.revoke_lease(self.id)


class EtcdKV:
    """etcd-backed store. start() does not wait for etcd: channels dial in the background, every operation
    fails with KVUnavailable within `request_timeout` while no endpoint answers, and watches resume by
    themselves once one does."""

    def __init__(self, endpoints: list[str], *, dial_timeout: float = 10.0, username: str = "",
                 password: str = "", ca_file: str = "", cert_file: str = "", key_file: str = "",
                 request_timeout: float = 5.0) -> None:
        self._conn = EtcdConnection(endpoints, dial_timeout=dial_timeout, username=username,
                                    password=password, ca_file=ca_file, cert_file=cert_file,
                                    key_file=key_file, request_timeout=request_timeout)
        self._closed = asyncio.Event()

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._closed.clear()
        self._conn.open()

    async def close(self) -> None:
        self._closed.set()
        await self._conn.close()

    # reads -----------------------------------------------------------------------------------------
    async def get(self, key: str) -> KVPair | None:
        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.RangeResponse:
            return await ep.kv.Range(rpc.RangeRequest(key=_key(key)), timeout=timeout, metadata=md)

        response = await self._conn.call("get", fn, idempotent=True)
        return _pair(response.kvs[0]) if response.kvs else None

    async def get_many(self, keys: Sequence[str]) -> dict[str, KVPair]:
        if len(keys) > MAX_TXN_OPS:
            raise KVError(f"get_many: {len(keys)} keys, at most {MAX_TXN_OPS}")
        # a transaction of reads only: one request, one revision
        request = rpc.TxnRequest(compare=[], success=[
            rpc.RequestOp(request_range=rpc.RangeRequest(key=_key(k))) for k in keys], failure=[])

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.TxnResponse:
            return await ep.kv.Txn(request, timeout=timeout, metadata=md)

        response = await self._conn.call("get_many", fn, idempotent=True)
        pairs = (_pair(kv) for r in response.responses for kv in r.response_range.kvs)
        return {p.key: p for p in pairs}

    async def list(self, prefix: str) -> ListResult:
        return await list_paged(self, prefix)

    async def list_page(self, prefix: str, *, after: str = "", limit: int = LIST_PAGE_SIZE,
                        revision: int = 0) -> ListPage:
        start = _key(after) + b"\0" if after else (_key(prefix) if prefix else b"\0")
        # no sort fields: etcd returns a range in key order, and a sort order other than NONE (even
        # KEY/ASCEND on some versions) makes it read the whole range before applying the limit
        request = rpc.RangeRequest(key=start, range_end=_range_end(prefix), limit=limit, revision=revision)

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.RangeResponse:
            return await ep.kv.Range(request, timeout=timeout, metadata=md)

        response = await self._conn.call("list", fn, idempotent=True)
        return ListPage([_pair(kv) for kv in response.kvs], revision or int(response.header.revision),
                        bool(response.more))

    async def current_revision(self) -> int:
        """The store's revision now (a count-only range: no keys are transferred)."""
        request = rpc.RangeRequest(key=b"\0", range_end=b"\0", count_only=True, limit=1)

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.RangeResponse:
            return await ep.kv.Range(request, timeout=timeout, metadata=md)

        response = await self._conn.call("revision", fn, idempotent=True)
        return int(response.header.revision)

    # writes ----------------------------------------------------------------------------------------
    async def put(self, key: str, value: bytes, *, lease: Lease | None = None) -> int:
        request = rpc.PutRequest(key=_key(key), value=value, lease=lease.id if lease else 0)

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.PutResponse:
            return await ep.kv.Put(request, timeout=timeout, metadata=md)

        response = await self._conn.call("put", fn, idempotent=False)
        return int(response.header.revision)

    async def delete(self, key: str) -> bool:
        request = rpc.DeleteRangeRequest(key=_key(key))

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.DeleteRangeResponse:
            return await ep.kv.DeleteRange(request, timeout=timeout, metadata=md)

        response = await self._conn.call("delete", fn, idempotent=False)
        return response.deleted > 0

    async def compare_and_swap(self, key: str, value: bytes | None, *, expected_mod_revision: int,
                               lease: Lease | None = None) -> bool:
        compare = rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=_key(key),
                              mod_revision=expected_mod_revision)
        if value is None:
            op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=_key(key)))
        else:
            op = rpc.RequestOp(request_put=rpc.PutRequest(key=_key(key), value=value,
                                                          lease=lease.id if lease else 0))
        request = rpc.TxnRequest(compare=[compare], success=[op], failure=[])

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.TxnResponse:
            return await ep.kv.Txn(request, timeout=timeout, metadata=md)

        response = await self._conn.call("compare_and_swap", fn, idempotent=False)
        return bool(response.succeeded)

    async def compare_and_swap_many(self, ops: Sequence[tuple[str, bytes | None, int]], *,
                                    lease: Lease | None = None) -> bool:
        if len(ops) > MAX_TXN_OPS:
            raise KVError(f"compare_and_swap_many: {len(ops)} ops, at most {MAX_TXN_OPS}")
        compares, writes = [], []
        for key, value, expected in ops:
            compares.append(rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=_key(key),
                                        mod_revision=expected))
            if value is None:
                writes.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=_key(key))))
            else:
                writes.append(rpc.RequestOp(request_put=rpc.PutRequest(key=_key(key), value=value,
                                                                       lease=lease.id if lease else 0)))
        request = rpc.TxnRequest(compare=compares, success=writes, failure=[])

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.TxnResponse:
            return await ep.kv.Txn(request, timeout=timeout, metadata=md)

        response = await self._conn.call("compare_and_swap_many", fn, idempotent=False)
        return bool(response.succeeded)

    # leases ----------------------------------------------------------------------------------------
    async def grant_lease(self, ttl: float) -> Lease:
        request = rpc.LeaseGrantRequest(TTL=max(1, math.ceil(ttl)))

        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.LeaseGrantResponse:
            return await ep.lease.LeaseGrant(request, timeout=timeout, metadata=md)

        response = await self._conn.call("grant_lease", fn, idempotent=False)
        if response.error:
            raise KVError(f"grant_lease: {response.error}")
        return EtcdLease(self, response.ID, float(response.TTL))

    async def keepalive_lease(self, lease_id: int) -> None:
        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.LeaseKeepAliveResponse:
            call = ep.lease.LeaseKeepAlive(timeout=timeout, metadata=md)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                response = await call.read()
            finally:
                call.cancel()
            if response is grpc.aio.EOF:
                raise KVUnavailable("keepalive: stream closed by etcd")
            return response

        response = await self._conn.call("keepalive", fn, idempotent=True)
        if response.TTL <= 0:
            raise LeaseExpired(f"lease {lease_id:x} not found")

    async def revoke_lease(self, lease_id: int) -> None:
        async def fn(ep: Endpoint, timeout: float, md: Metadata | None) -> rpc.LeaseRevokeResponse:
            request = rpc.LeaseRevokeRequest(ID=lease_id)
            return await ep.lease.LeaseRevoke(request, timeout=timeout, metadata=md)

        with contextlib.suppress(LeaseExpired):  # already gone: nothing left to end
            await self._conn.call("revoke", fn, idempotent=True)

    # watch -----------------------------------------------------------------------------------------
    async def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[WatchEvent]:
        next_revision = start_revision
        backoff = _WATCH_BACKOFF_MIN
        while next_revision is None and not self._closed.is_set():
            # "From now" means from this call: pin the revision before any stream opens, so an outage
            # between the call and the first stream cannot make the watch skip what happened meanwhile.
            try:
                next_revision = await self.current_revision() + 1
            except KVUnavailable:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), backoff)
                backoff = min(_WATCH_BACKOFF_MAX, backoff * 2)
        backoff = _WATCH_BACKOFF_MIN
        while not self._closed.is_set():
            try:
                async for events, header_revision in self._watch_stream(prefix, next_revision):
                    backoff = _WATCH_BACKOFF_MIN
                    if next_revision is None:
                        next_revision = header_revision + 1
                    for event in events:
                        next_revision = event.revision + 1
                        yield event
            except KVUnavailable as exc:
                _log.debug("etcd watch interrupted; resuming", prefix=prefix, err=str(exc), revision=next_revision)
            if self._closed.is_set():
                return
            with contextlib.suppress(TimeoutError):  # back off before re-watching; wake at once on close()
                await asyncio.wait_for(self._closed.wait(), backoff)
            backoff = min(_WATCH_BACKOFF_MAX, backoff * 2)

    async def _watch_stream(self, prefix: str, start_revision: int | None
                            ) -> AsyncIterator[tuple[list[WatchEvent], int]]:
        """One gRPC watch stream: (events, header revision) per response; KVUnavailable when it drops."""
        if self._conn.closed:
            raise KVUnavailable("etcd client is closed")
        endpoint = self._conn.pick()
        create = rpc.WatchCreateRequest(key=_key(prefix) if prefix else b"\0", range_end=_range_end(prefix),
                                        start_revision=start_revision or 0)
        try:
            metadata = await self._conn.metadata(endpoint, self._conn.request_timeout)
            call = endpoint.watch.Watch(metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            self._conn.token_rejected(exc)
            self._conn.failed(endpoint)
            raise map_error(exc, "watch") from exc
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise KVUnavailable("watch: stream closed by etcd")
                if response.compact_revision:
                    raise Compacted(f"watch {prefix!r} from revision {start_revision}: history compacted up "
                                  f"to {response.compact_revision}; re-list and watch again")
                if response.canceled:
                    raise KVUnavailable(f"watch canceled by etcd: {response.cancel_reason}")
                events = [WatchEvent(EventType.DELETE if ev.type == rpc.Event.DELETE else EventType.PUT,
                                     ev.kv.key.decode("utf-8", "surrogateescape"),
                                     b"" if ev.type == rpc.Event.DELETE else bytes(ev.kv.value),
                                     ev.kv.mod_revision)
                                for ev in response.events]
                yield events, response.header.revision
        except grpc.aio.AioRpcError as exc:
            if not self._conn.token_rejected(exc):
                self._conn.failed(endpoint)
            error = map_error(exc, "watch")
            raise (error if isinstance(error, KVUnavailable) else KVUnavailable(str(error))) from exc
        finally:
            call.cancel()
