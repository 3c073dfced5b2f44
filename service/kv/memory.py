"""In-memory KV store with etcd semantics, for unit tests and as the embedded store's live index."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence

from service.kv.store import (
    LIST_PAGE_SIZE,
    MAX_TXN_OPS,
    Compacted,
    EventType,
    KVError,
    KVPair,
    Lease,
    LeaseExpired,
    ListPage,
    ListResult,
    WatchEvent,
)


class MemoryLease:
    def __init__(self, store: MemoryKV, lease_id: int, ttl: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self._store = store

    async def keepalive_once(self) -> None:
        self._store.refresh_lease(self.id)

    async def revoke(self) -> None:
        self._store.revoke_lease(self.id)


class MemoryKV:
    """All state in dicts; watchers get events through per-watch queues. The last `history_limit` events
    are kept so a watch can resume from a recent revision; older ones count as compacted (KVError)."""

    def __init__(self, history_limit: int = 100_000) -> None:
        self._data: dict[str, KVPair] = {}
        self._revision = 0
        self._history: deque[WatchEvent] = deque(maxlen=history_limit)
        self._compacted = 0  # watches must start after this revision
        self._watchers: set[asyncio.Queue[WatchEvent]] = set()
        self._leases: dict[int, tuple[float, float]] = {}  # id -> (ttl, deadline)
        self._lease_ids = itertools.count(1)
        self._reaper: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_leases(), name="kv-lease-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None

    # reads -----------------------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> KVPair | None:
        return self._data.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, KVPair]:
        if len(keys) > MAX_TXN_OPS:
            raise KVError(f"get_many: {len(keys)} keys, at most {MAX_TXN_OPS}")
        return {k: p for k in keys if (p := self._data.get(k)) is not None}

    async def list(self, prefix: str) -> ListResult:
        """One step of the event loop: already a snapshot, no pages needed."""
        pairs = sorted((p for k, p in self._data.items() if k.startswith(prefix)), key=lambda p: p.key)
        return ListResult(pairs, self._revision)

    async def list_page(self, prefix: str, *, after: str = "", limit: int = LIST_PAGE_SIZE,
                        revision: int = 0) -> ListPage:
        """Only the current values are kept, so a page at an earlier revision is served when nothing under
        the prefix changed since (the history shows it); otherwise that revision counts as compacted."""
        if revision > self._revision:
            raise KVError(f"revision {revision} is in the future (store is at {self._revision})")
        if revision and revision != self._revision and self._changed_since(prefix, revision):
            raise Compacted(f"revision {revision} of {prefix!r} is no longer kept")
        keys = heapq.nsmallest(limit + 1, (k for k in self._data if k.startswith(prefix) and k > after))
        return ListPage([self._data[k] for k in keys[:limit]], revision or self._revision, len(keys) > limit)

    def _changed_since(self, prefix: str, revision: int) -> bool:
        """Whether a key under prefix changed after `revision` (True when the history no longer tells)."""
        if revision < self._compacted:
            return True
        for event in reversed(self._history):
            if event.revision <= revision:
                return False
            if event.key.startswith(prefix):
                return True
        return False

    # writes ----------------------------------------------------------------------------------------
    async def put(self, key: str, value: bytes, *, lease: Lease | None = None) -> int:
        return self.apply_put(key, value, lease.id if lease else 0)

    async def delete(self, key: str) -> bool:
        return self.apply_delete(key)

    async def compare_and_swap(self, key: str, value: bytes | None, *, expected_mod_revision: int,
                               lease: Lease | None = None) -> bool:
        current = self._data.get(key)
        if (current.mod_revision if current else 0) != expected_mod_revision:
            return False
        if value is None:
            self.apply_delete(key)
        else:
            self.apply_put(key, value, lease.id if lease else 0)
        return True

    async def compare_and_swap_many(self, ops: Sequence[tuple[str, bytes | None, int]], *,
                                    lease: Lease | None = None) -> bool:
        if len(ops) > MAX_TXN_OPS:
            raise KVError(f"compare_and_swap_many: {len(ops)} ops, at most {MAX_TXN_OPS}")
        for key, _value, expected in ops:
            current = self._data.get(key)
            if (current.mod_revision if current else 0) != expected:
                return False
        if lease is not None and any(v is not None for _, v, _ in ops) and lease.id not in self._leases:
            raise LeaseExpired(f"lease {lease.id} not found")
        for key, value, _expected in ops:
            if value is None:
                self.apply_delete(key)
            else:
                self.apply_put(key, value, lease.id if lease else 0)
        return True

    def apply_put(self, key: str, value: bytes, lease_id: int = 0, revision: int | None = None) -> int:
        if lease_id and lease_id not in self._leases:
            raise LeaseExpired(f"lease {lease_id} not found")
        self._revision = revision if revision is not None else self._revision + 1
        old = self._data.get(key)
        created = old.create_revision if old else self._revision
        self._data[key] = KVPair(key, value, created, self._revision, lease_id)
        self._emit(WatchEvent(EventType.PUT, key, value, self._revision))
        return self._revision

    def apply_delete(self, key: str, revision: int | None = None) -> bool:
        if key not in self._data:
            return False
        del self._data[key]
        self._revision = revision if revision is not None else self._revision + 1
        self._emit(WatchEvent(EventType.DELETE, key, b"", self._revision))
        return True

    def _emit(self, event: WatchEvent) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].revision
        self._history.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)

    # leases ----------------------------------------------------------------------------------------
    async def grant_lease(self, ttl: float) -> Lease:
        lease_id = next(self._lease_ids)
        self._leases[lease_id] = (ttl, time.monotonic() + ttl)
        return MemoryLease(self, lease_id, ttl)

    def refresh_lease(self, lease_id: int) -> None:
        entry = self._leases.get(lease_id)
        if entry is None:
            raise LeaseExpired(f"lease {lease_id} not found")
        self._leases[lease_id] = (entry[0], time.monotonic() + entry[0])

    def revoke_lease(self, lease_id: int) -> None:
        self._leases.pop(lease_id, None)
        for key in [k for k, p in self._data.items() if p.lease == lease_id]:
            self.apply_delete(key)

    async def _reap_leases(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for lease_id in [i for i, (_, deadline) in self._leases.items() if deadline < now]:
                self.revoke_lease(lease_id)

    # watch -----------------------------------------------------------------------------------------
    def compact(self, revision: int) -> None:
        """Forget history up to `revision` (inclusive); later watches must start after it."""
        while self._history and self._history[0].revision <= revision:
            self._history.popleft()
        self._compacted = max(self._compacted, revision)

    async def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[WatchEvent]:
        if start_revision is not None and start_revision <= self._compacted:
            raise Compacted(f"revision {start_revision} is compacted (history starts after {self._compacted})")
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            last = self._revision if start_revision is None else start_revision - 1
            for event in list(self._history):
                if event.revision > last and event.key.startswith(prefix):
                    last = event.revision
                    yield event
            while True:
                event = await queue.get()
                if event.revision > last and event.key.startswith(prefix):
                    last = event.revision
                    yield event
        finally:
            self._watchers.discard(queue)
