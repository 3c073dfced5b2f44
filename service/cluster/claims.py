"""Per-config claims: `<claims prefix><name>` says which node runs the config, under that node's lease.

A node starts a config only after creating its claim with compare_and_swap(expected 0), and deletes the claim
only after the instance stopped. So a config never runs on two nodes at once: the new owner waits until the
old owner released (graceful stop, or the whole lease revoked on shutdown) or its lease expired (crash).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from service.kv.store import KVError, KVStore, Lease, LeaseExpired

CLAIM_CONCURRENCY = 64


@dataclass(frozen=True, slots=True)
class Claim:
    name: str
    node: str
    lease: int
    mod_revision: int
    error: str = ""  # the owner's instance failed to start (it retries)


class Claims:
    def __init__(self, kv: KVStore, prefix: str, node_id: str) -> None:
        self.kv = kv
        self.prefix = prefix
        self.node_id = node_id

    def key(self, name: str) -> str:
        return self.prefix + name

    async def list(self) -> dict[str, Claim]:
        """Every claim by config name (a value that does not decode counts as held by nobody we know)."""
        listing = await self.kv.list(self.prefix)
        out: dict[str, Claim] = {}
        for pair in listing.pairs:
            try:
                data = orjson.loads(pair.value)
                node, lease, err = str(data["node"]), int(data["lease"]), str(data.get("error", ""))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                node, lease, err = "", pair.lease, ""
            name = pair.key[len(self.prefix):]
            out[name] = Claim(name, node, lease, pair.mod_revision, err)
        return out

    async def set_error(self, name: str, lease: Lease, error: str) -> bool:
        """Record (or clear, with "") why our instance of `name` failed to start, in our own claim."""
        pair = await self.kv.get(self.key(name))
        if pair is None:
            return False
        try:
            data = orjson.loads(pair.value)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(data, dict) or data.get("node") != self.node_id or data.get("lease") != lease.id:
            return False
        value: dict[str, object] = {"node": self.node_id, "lease": lease.id}
        if error:
            value["error"] = error
        return await self.kv.compare_and_swap(self.key(name), orjson.dumps(value),
                                              expected_mod_revision=pair.mod_revision, lease=lease)

    def ours(self, claim: Claim | None, lease: Lease | None) -> bool:
        return claim is not None and lease is not None and claim.node == self.node_id and claim.lease == lease.id

    async def acquire(self, names: Iterable[str], lease: Lease, current: dict[str, Claim]) -> set[str]:
        """Claim every name whose key is free or held by an earlier lease of ours; the names now ours."""
        value = orjson.dumps({"node": self.node_id, "lease": lease.id})
        limit = asyncio.Semaphore(CLAIM_CONCURRENCY)

        async def one(name: str) -> str | None:
            claim = current.get(name)
            if claim is not None and claim.node != self.node_id:
                return None
            expected = claim.mod_revision if claim is not None else 0
            async with limit:
                ok = await self.kv.compare_and_swap(self.key(name), value, expected_mod_revision=expected,
                                                    lease=lease)
            return name if ok else None

        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        won: set[str] = set()
        for result in results:
            if isinstance(result, LeaseExpired):
                raise result
            if isinstance(result, BaseException):
                if isinstance(result, KVError):
                    continue  # retried on the next reshard
                raise result
            if result is not None:
                won.add(result)
        return won

    async def release(self, claims: Iterable[Claim]) -> int:
        """Delete these claims (only as they were: a claim re-taken meanwhile stays). Returns how many."""
        limit = asyncio.Semaphore(CLAIM_CONCURRENCY)

        async def one(claim: Claim) -> bool:
            async with limit:
                return await self.kv.compare_and_swap(self.key(claim.name), None,
                                                      expected_mod_revision=claim.mod_revision)

        results = await asyncio.gather(*(one(c) for c in claims), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, KVError):
                raise result
        return sum(1 for r in results if r is True)
