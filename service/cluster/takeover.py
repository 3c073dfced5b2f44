"""Fast takeover: claim and start the configs another node let go of, the moment etcd says so.

A full reshard lists every config, member and claim (10k configs: a second or more on a loaded node), so
waiting for one after a crash or a handoff adds that second to every moved config's gap. Instead the watches
hand two kinds of event straight here:

- a member's record was deleted (its lease expired or was revoked) or it turned LEAVING / JOINING: it leaves
  this node's view of the ring, and every config it owned that this node now owns becomes a candidate;
- a claim was deleted (the old owner released it as its last scrape ended, or its lease went): that config is
  a candidate.

A candidate is taken when, on the ring as this node sees it, this node owns it, does not run it yet, and its
stored config was listed by the last reshard (the successor pre-parse has usually parsed it already; what it
has not reached yet is parsed here, in a thread).
It is claimed with compare_and_swap(expected 0), exactly as a reshard claims, so a config never runs on two
nodes at once, and started on its own, without touching anything else that runs. The full reshard the same
event triggers follows and reconciles whatever this view missed (a config changed meanwhile, a join).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from service.cluster import metrics as m
from service.cluster.claims import Claims
from service.cluster.configcache import ConfigCache
from service.cluster.membership import Membership, State
from service.cluster.ring import Ring
from service.kv.store import KVError, KVPair
from service.log import get_logger
from service.metrics.config import InstanceConfig
from service.metrics.manager import InstanceManager

_log = get_logger("cluster.takeover")


class Sharder(Protocol):
    """What a takeover reads and asks of the node's sharder (the sharder owns the takeover, so this is a
    protocol rather than an import of it)."""

    node_id: str
    membership: Membership
    claims: Claims
    cache: ConfigCache
    manager: InstanceManager
    pairs: dict[str, KVPair]
    sharded: set[str]

    @property
    def lock(self) -> asyncio.Lock: ...

    @property
    def ring(self) -> Ring | None: ...

    @property
    def leaving(self) -> bool: ...

    def waiting_for(self, name: str) -> bool: ...

    def request(self, trigger: str = ...) -> None: ...

    def note_claimed(self, won: set[str]) -> None: ...


class Takeover:
    def __init__(self, sharder: Sharder) -> None:
        self.sharder = sharder
        self._active: set[str] = set()  # ACTIVE members: the last reshard's listing, then the watch's events
        self._ring: Ring | None = None
        self._names: set[str] = set()
        self._gone: list[str] = []  # members that left the ring since the last pass
        self._recent: dict[str, tuple[int, State | None]] = {}  # member → (revision, state) seen by the watch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cluster-takeover")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # what the reshard and the watches tell it ----------------------------------------------------------
    def resharded(self, ring: Ring, revision: int) -> None:
        """A full reshard saw this ring at `revision`; what the watch saw after that revision still counts
        (a member deleted while the reshard listed must not come back into view)."""
        self._active = set(ring.members)
        self._ring = ring
        self._recent = {mid: seen for mid, seen in self._recent.items() if seen[0] > revision}
        for mid, (_, state) in self._recent.items():
            self._apply(mid, state)

    def member_changed(self, member_id: str, state: State | None, revision: int) -> None:
        """A member's record was deleted (state None) or written with `state`, at `revision`."""
        if state is not State.ACTIVE or member_id not in self._active:
            self._recent[member_id] = (revision, state)  # heartbeats of ACTIVE members are not kept
        self._apply(member_id, state)

    def _apply(self, member_id: str, state: State | None) -> None:
        if state is State.ACTIVE:
            if member_id not in self._active:
                self._active.add(member_id)
                self._ring = None
            return
        if member_id in self._active:
            _log.info("member left the ring", member=member_id, state=state.value if state else "deleted")
            self._active.discard(member_id)
            self._ring = None
            self._gone.append(member_id)
            self._wake.set()

    def claim_deleted(self, name: str) -> None:
        self._names.add(name)
        self._wake.set()

    # the pass ------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # the rest of the same watch response (one lease: thousands of deletions)
            self._wake.clear()
            try:
                await self.take()
            except KVError as exc:  # the reshard the same event triggered retries
                _log.warning("fast takeover failed; the next reshard retries", err=str(exc))

    def ring(self) -> Ring | None:
        if self._ring is None and self.sharder.ring is not None:
            self._ring = Ring(self._active)
        return self._ring

    async def take(self) -> None:
        sharder = self.sharder
        async with sharder.lock:
            names, self._names = self._names, set()
            gone, self._gone = self._gone, []
            ring, lease, pairs = self.ring(), sharder.membership.lease, sharder.pairs
            if ring is None or lease is None or sharder.leaving or not (names or gone):
                return
            before = sharder.ring
            me = sharder.node_id
            if gone and before is not None:
                names.update(n for n in pairs if before.owner(n) in gone)
            manager = sharder.manager
            wanted = [n for n in names if n in pairs and n not in sharder.sharded and ring.owner(n) == me
                      and manager.get(n) is None]  # a target-sharded config runs everywhere, claim-free
            unparsed = [(n, pairs[n]) for n in wanted if not sharder.cache.fresh(pairs[n])]
            if unparsed:  # the successor pre-parse had not reached them: off the loop, as a reshard would
                await asyncio.to_thread(sharder.cache.parse_missing, unparsed)
            cfgs: dict[str, InstanceConfig] = {}
            digests: dict[str, str] = {}
            for name in wanted:
                parsed = sharder.cache.get(name, pairs[name])
                if parsed.cfg is not None:
                    cfgs[name], digests[name] = parsed.cfg, parsed.digest
            if any(sharder.waiting_for(n) and n not in cfgs for n in names):
                sharder.request("takeover")  # something this view cannot decide: a full reshard does
            if not cfgs:
                return
            began = time.monotonic()
            won = await sharder.claims.acquire(list(cfgs), lease, {})
            waiting = set(cfgs) - won  # still held (a LEAVING node halting): pre-warm, start on its deletion
            if waiting:
                manager.prepare({n: cfgs[n] for n in waiting}, {n: digests[n] for n in waiting})
            if not won:
                return
            sharder.note_claimed(won)
            applied = await manager.start_more({n: cfgs[n] for n in won}, {n: digests[n] for n in won})
        m.TAKEOVERS.inc(len(applied.started))
        _log.info("took over configs", started=len(applied.started), failed=len(applied.failed),
                  claimed=len(won), members_gone=sorted(gone), seconds=round(time.monotonic() - began, 3))
