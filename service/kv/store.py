"""The KV store protocol every backend (memory, embedded SQLite, etcd) implements.

Semantics follow etcd v3, the strictest backend: every change bumps one store-wide revision; a key carries the
revision it was created at and last modified at; a lease expires unless kept alive, and deletes the keys
attached to it; a watch reports every change under a prefix after a given revision, in order.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class KVError(Exception):
    """A KV operation failed for a reason other than the store being unreachable."""


class KVUnavailable(KVError):
    """The store cannot be reached right now (the HTTP layer answers 503)."""


class LeaseExpired(KVError):
    """The lease is gone: it expired or was revoked."""


class Compacted(KVError):
    """The revision asked for is no longer kept (etcd compacted it): read or watch again from now."""


@dataclass(frozen=True, slots=True)
class KVPair:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class ListResult:
    pairs: list[KVPair]
    revision: int  # the store revision the listing reflects; watch from revision + 1 to miss nothing


@dataclass(frozen=True, slots=True)
class ListPage:
    pairs: list[KVPair]
    revision: int  # the revision this page was read at: pass it to the next page's list_page
    more: bool  # keys remain after pairs[-1].key


@runtime_checkable
class Lease(Protocol):
    id: int
    ttl: float

    async def keepalive_once(self) -> None:
        """Refresh the lease; raises LeaseExpired when it is gone."""

    async def revoke(self) -> None:
        """End the lease now, deleting its keys."""


MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
# Keys in the first range request when listing a prefix (later pages are sized by bytes: kv/paging.py). An
# unpaginated 100k-key range ran past etcd's 5 s request deadline.
LIST_PAGE_SIZE = 1000


@runtime_checkable
class KVStore(Protocol):
    async def start(self) -> None:
        """Connect (or open). Must not block forever on an unreachable store."""

    async def close(self) -> None: ...

    async def get(self, key: str) -> KVPair | None: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, KVPair]:
        """The keys that exist among `keys` (at most MAX_TXN_OPS), all read at one revision in one request."""

    async def list(self, prefix: str) -> ListResult:
        """Every key under prefix, sorted, as of one revision (a store may read it in pages: list_paged)."""

    async def list_page(self, prefix: str, *, after: str = "", limit: int = LIST_PAGE_SIZE,
                        revision: int = 0) -> ListPage:
        """Up to `limit` keys under prefix that sort after `after` ("" : from the first), as of `revision`
        (0: now). Compacted when that revision is no longer readable."""

    async def put(self, key: str, value: bytes, *, lease: Lease | None = None) -> int:
        """Write a key; returns the new revision."""

    async def delete(self, key: str) -> bool:
        """Delete a key; False when it did not exist."""

    async def compare_and_swap(self, key: str, value: bytes | None, *, expected_mod_revision: int,
                               lease: Lease | None = None) -> bool:
        """Write (or delete, when value is None) only if the key's mod_revision equals
        `expected_mod_revision` (0: the key must not exist). False when the comparison failed."""

    async def compare_and_swap_many(self, ops: Sequence[tuple[str, bytes | None, int]], *,
                                    lease: Lease | None = None) -> bool:
        """Several compare_and_swap (key, value or None to delete, expected_mod_revision) as one all-or-nothing
        transaction: True when every comparison held and every write was made. At most MAX_TXN_OPS ops."""

    async def grant_lease(self, ttl: float) -> Lease: ...

    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[WatchEvent]:
        """Every change under prefix after start_revision (or from now), in revision order.

        Resumes by itself after a dropped connection, from the last revision it delivered. If the
        history it needs was compacted away it raises KVError: the caller re-lists and watches again."""
        ...
