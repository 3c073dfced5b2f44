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

from service.kv.store import MAX_TXN_OPS, KVError, KVStore, Lease, LeaseExpired

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
        """Claim every name whose key is free or held by an earlier lease of ours; the names now ours.

        Free keys are claimed MAX_TXN_OPS at a time in one transaction each (a takeover of thousands of
        configs is a few dozen etcd requests, not thousands); a batch that meets a key taken is read back in
        one request and retried with the keys still free."""
        value = orjson.dumps({"node": self.node_id, "lease": lease.id})
        free = [n for n in names if n not in current]
        ours_before = [n for n in names if n in current and current[n].node == self.node_id]
        ops = [(n, value, 0) for n in free] + [(n, value, current[n].mod_revision) for n in ours_before]
        return await self._swap(ops, lease)

    async def release(self, claims: Iterable[Claim]) -> int:
        """Delete these claims (only as they were: a claim re-taken meanwhile stays). Returns how many."""
        return len(await self._swap([(c.name, None, c.mod_revision) for c in claims], None))

    async def _swap(self, ops: list[tuple[str, bytes | None, int]], lease: Lease | None) -> set[str]:
        """compare_and_swap every (name, value, expected) op, batched; the names whose swap was made."""
        limit = asyncio.Semaphore(CLAIM_CONCURRENCY)

        async def one(name: str, value: bytes | None, expected: int) -> str | None:
            async with limit:
                ok = await self.kv.compare_and_swap(self.key(name), value, expected_mod_revision=expected,
                                                    lease=lease)
            return name if ok else None

        async def many(chunk: list[tuple[str, bytes | None, int]]) -> bool:
            async with limit:
                return await self.kv.compare_and_swap_many([(self.key(n), v, e) for n, v, e in chunk], lease=lease)

        async def batch(chunk: list[tuple[str, bytes | None, int]]) -> list[str | None]:
            if len(chunk) > 1:
                if await many(chunk):
                    return [n for n, _, _ in chunk]
                # Some key was not as expected (a takeover while the old owner still releases its claims):
                # read the batch's keys in one request and swap only those still as expected, rather than
                # one request per key.
                async with limit:
                    current = await self.kv.get_many([self.key(n) for n, _, _ in chunk])
                chunk = [(n, v, e) for n, v, e in chunk
                         if (current[k].mod_revision if (k := self.key(n)) in current else 0) == e]
                if len(chunk) > 1 and await many(chunk):
                    return [n for n, _, _ in chunk]
            return list(await asyncio.gather(*(one(*op) for op in chunk)))

        chunks = [ops[i:i + MAX_TXN_OPS] for i in range(0, len(ops), MAX_TXN_OPS)]
        results = await asyncio.gather(*(batch(c) for c in chunks), return_exceptions=True)
        done: set[str] = set()
        for result in results:
            if isinstance(result, LeaseExpired):
                raise result
            if isinstance(result, BaseException):
                if isinstance(result, KVError):
                    continue  # retried on the next reshard
                raise result
            done.update(n for n in result if n is not None)
        return done
