"""The sharder: from the KV store's configs and ring to this node's running set, in one bulk diff.

Triggers: a watch on the config prefix (any change), on the ring prefix (a member appeared, left or changed
state; heartbeats alone do not count), the `reshard_interval` timer and explicit requests. Triggers arriving
within `debounce` are coalesced. A deleted claim and a member leaving the ring first go to the fast takeover
(takeover.py), which claims and starts just the configs freed for this node without a full listing.

One reshard (bounded by `reshard_timeout`): list configs, members and claims once; compute the owner of every
config on the ring; parse owned configs through the (key, mod_revision) cache; claim the owned configs not
yet claimed (compare_and_swap, expected 0); hand the claimed set to the instance manager with cached digests
(it stops removed, starts added, restarts changed); release the claims of what stopped. If the store cannot
be reached the reshard fails and nothing running is touched; the next one is tried 1 s later, then 2, 4 ...
up to 30 s (or `reshard_interval`, if shorter).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service.cluster import metrics as m
from service.cluster.claims import Claim, Claims
from service.cluster.configcache import ConfigCache
from service.cluster.membership import Member, Membership, State, parse_members
from service.cluster.placement import Placement
from service.cluster.ring import Ring
from service.cluster.takeover import Takeover
from service.cluster.targetsharding import ShardedConfigs, shard_view
from service.kv.store import EventType, KVError, KVPair, KVStore, Lease, WatchEvent
from service.log import RepeatedWarning, get_logger
from service.metrics.config import GlobalConfig, InstanceConfig
from service.metrics.manager import ApplyResult, InstanceManager
from service.metrics.scrape.sharding import TargetShards

_log = get_logger("cluster.sharder")

_RETRY_MIN, _RETRY_MAX = 1.0, 30.0  # backoff between reshards after a failed one
_SUCCESSOR_SLICE = 0.005  # the successor pre-parse parses for this long, then yields the loop for as long


@dataclass
class ReshardResult:
    ok: bool = False
    error: str = ""
    duration: float = 0.0
    owned: int = 0
    running: int = 0
    pending: int = 0
    invalid: int = 0
    claimed: int = 0
    released: int = 0
    applied: ApplyResult = field(default_factory=ApplyResult)

    def changed(self) -> bool:
        a = self.applied
        return bool(a.started or a.stopped or a.restarted or a.failed or self.claimed or self.released)

    def record(self, trigger: str, at: float) -> dict[str, object]:
        """What the UI's reshard history shows: when, why, how long, and what started or stopped here."""
        a = self.applied
        return {"at": round(at, 3), "trigger": trigger, "ok": self.ok, "error": self.error,
                "duration_seconds": round(self.duration, 4), "started_names": sorted(a.started)[:50],
                "stopped_names": sorted(a.stopped)[:50], "restarted_names": sorted(a.restarted)[:50],
                "started": len(a.started), "stopped": len(a.stopped), "restarted": len(a.restarted),
                "failed": len(a.failed)}

    def summary(self) -> dict[str, object]:
        a = self.applied
        return {"ok": self.ok, "error": self.error, "duration_seconds": round(self.duration, 4),
                "owned": self.owned, "running": self.running, "pending_handoff": self.pending,
                "invalid": self.invalid, "claimed": self.claimed, "released": self.released,
                "started": len(a.started), "stopped": len(a.stopped), "restarted": len(a.restarted),
                "unchanged": a.unchanged, "failed": len(a.failed)}


class Sharder:
    def __init__(self, kv: KVStore, manager: InstanceManager, membership: Membership, claims: Claims, *,
                 config_prefix: str, global_cfg: GlobalConfig, reshard_interval: float, reshard_timeout: float,
                 debounce: float = 0.05, on_synced: Callable[[], None] | None = None,
                 target_shards: TargetShards | None = None) -> None:
        self.kv = kv
        self.manager = manager
        self.membership = membership
        self.claims = claims
        self.config_prefix = config_prefix
        self.cache = ConfigCache(global_cfg)
        self.reshard_interval = reshard_interval
        self.reshard_timeout = reshard_timeout
        self.debounce = debounce
        self.on_synced = on_synced
        self.synced = False
        self.last: ReshardResult | None = None
        self._wake = asyncio.Event()
        self._trigger = "start"
        self._waiters: list[asyncio.Future[ReshardResult]] = []
        self._ring_view: dict[str, State] = {}
        self._ring: Ring | None = None
        self.placement = Placement(membership.node_id)  # nothing known until the first reshard
        self.history: deque[dict[str, object]] = deque(maxlen=50)  # the last reshards that changed something
        self._pending_since: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._successors_key: tuple[object, ...] = ()
        self._successors_task: asyncio.Task[None] | None = None
        # sharding: targets configs run on every ACTIVE node, claim-free; the view their pools shard by
        self.target_shards = target_shards
        self.sharded_configs = ShardedConfigs()
        self.sharded: set[str] = set()
        self.pairs: dict[str, KVPair] = {}  # the configs the last reshard listed, by name
        self.takeover = Takeover(self)

    @property
    def node_id(self) -> str:
        return self.membership.node_id

    @property
    def lock(self) -> asyncio.Lock:
        """Held by a reshard and by a fast takeover: one changes the running set at a time."""
        return self._lock

    @property
    def ring(self) -> Ring | None:
        """The ring the last reshard computed (None before the first)."""
        return self._ring

    @property
    def leaving(self) -> bool:
        return self.membership.state is State.LEAVING

    # lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(), name="cluster-sharder")]

    async def stop(self) -> None:
        await self.takeover.stop()
        tasks, self._tasks = self._tasks, []
        if self._successors_task is not None:
            tasks.append(self._successors_task)
            self._successors_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()

    def request(self, trigger: str = "request") -> None:
        self._trigger = trigger
        self._wake.set()

    async def reshard_now(self) -> ReshardResult:
        """Ask for a reshard and wait for it to finish."""
        waiter: asyncio.Future[ReshardResult] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.request("api")
        return await waiter

    async def _run(self) -> None:
        await self._join()
        self.takeover.start()
        self._tasks += [
            asyncio.create_task(self._watch(self.config_prefix, lambda e: True), name="cluster-watch-configs"),
            asyncio.create_task(self._watch(self.membership.prefix, self._ring_changed), name="cluster-watch-ring"),
            asyncio.create_task(self._watch(self.claims.prefix, self._claim_released), name="cluster-watch-claims"),
        ]
        self._wake.set()
        failures = 0
        while True:
            # after a failed reshard (store unreachable, timed out) try again soon, not a whole interval later
            wait = self.reshard_interval if not failures else min(
                self.reshard_interval, _RETRY_MIN * 2 ** (failures - 1), _RETRY_MAX)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            trigger = self._trigger if self._wake.is_set() else ("retry" if failures else "interval")
            if self.debounce > 0:
                await asyncio.sleep(self.debounce)  # coalesce a burst of changes into one reshard
            self._wake.clear()
            self._trigger = "event"
            waiters, self._waiters = self._waiters, []
            result = await self.reshard(trigger)
            failures = 0 if result.ok else failures + 1
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    async def _join(self) -> None:
        """Register (JOINING), then go ACTIVE; retry while the store cannot be reached."""
        delay = 0.1
        failing = RepeatedWarning(_log, "cannot join the ring yet: KV store unreachable, retrying")
        while True:
            try:
                if not self.membership.registered:
                    await self.membership.register()
                self.membership.start()  # keep the lease alive while preparing
                await self._prewarm()
                await self.membership.set_state(State.ACTIVE)
                failing.recovered("KV store reachable again: joined the ring")
                break
            except KVError as exc:
                failing.failed(err=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, max(self.membership.heartbeat_period, 0.1))

    async def _prewarm(self) -> None:
        """While JOINING: parse what this node will own once ACTIVE, so taking it over is quick."""
        configs, ring_listing = await asyncio.gather(self.kv.list(self.config_prefix),
                                                     self.kv.list(self.membership.prefix))
        members = parse_members([(p.key, p.value) for p in ring_listing.pairs])
        ring = Ring([*(mid for mid, mem in members.items() if mem.state is State.ACTIVE), self.node_id])
        owned = [(name, p) for p in configs.pairs
                 if ring.owner(name := p.key[len(self.config_prefix):]) == self.node_id]
        await asyncio.to_thread(self.cache.parse_missing, owned)
        ready = {name: parsed for name, pair in owned if (parsed := self.cache.get(name, pair)).cfg is not None}
        # open their WALs and run their discovery too: once ACTIVE, each only has to begin scraping
        self.manager.prepare({n: p.cfg for n, p in ready.items() if p.cfg is not None},
                             {n: p.digest for n, p in ready.items()})
        await self.manager.wait_prepared()

    async def _watch(self, prefix: str, relevant: Callable[[WatchEvent], bool]) -> None:
        delay = 0.1
        failing = RepeatedWarning(_log, "watch ended; watching again")
        while True:
            try:
                async for event in self.kv.watch(prefix):
                    delay = 0.1
                    failing.recovered("KV store reachable again: watch resumed", prefix=prefix)
                    if relevant(event):
                        self._wake.set()
            except KVError as exc:  # compacted or failed: watch again from now, resync by a full reshard
                failing.failed(prefix=prefix, err=str(exc))
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _ring_changed(self, event: WatchEvent) -> bool:
        if event.type is EventType.DELETE:
            self.takeover.member_changed(event.key[len(self.membership.prefix):], None, event.revision)
            return True
        try:
            member = Member.decode(event.value)
        except ValueError:
            return False
        self.takeover.member_changed(member.id, member.state, event.revision)
        return self._ring_view.get(member.id) is not member.state

    def _claim_released(self, event: WatchEvent) -> bool:
        """A deleted claim goes to the fast takeover; it asks for a full reshard when it cannot take it."""
        if event.type is EventType.DELETE:
            self.takeover.claim_deleted(event.key[len(self.claims.prefix):])
        return False

    # one reshard -------------------------------------------------------------------------------------
    async def reshard(self, trigger: str = "request") -> ReshardResult:
        m.RESHARDS.labels(trigger).inc()
        started = time.monotonic()
        self._step = "the previous reshard to finish"
        try:
            async with asyncio.timeout(self.reshard_timeout or None):
                result = await self._reshard()
        except (KVError, TimeoutError) as exc:
            result = ReshardResult(error=str(exc) or f"reshard timed out after {self.reshard_timeout:g}s waiting "
                                                    f"for {self._step}")
            _log.warning("reshard failed; running instances are left as they are", err=result.error)
        result.duration = time.monotonic() - started
        m.RESHARD_DURATION.labels("1" if result.ok else "0").observe(result.duration)
        self.last = result
        if not result.ok or result.changed():
            self.history.append(result.record(trigger, time.time()))
        if result.ok and not self.synced:
            self.synced = True
            if self.on_synced is not None:
                self.on_synced()
        return result

    async def _reshard(self) -> ReshardResult:
        async with self._lock:
            lease = self.membership.lease
            if lease is None:
                raise KVError("not registered in the ring")
            self._step = "the KV store to list configs, ring members and claims"
            configs, ring_listing, claims = await asyncio.gather(
                self.kv.list(self.config_prefix), self.kv.list(self.membership.prefix), self.claims.list())
            members = parse_members([(p.key, p.value) for p in ring_listing.pairs])
            self._ring_view = {mid: mem.state for mid, mem in members.items()}
            _count_states(members)
            leaving = self.membership.state is State.LEAVING
            if not leaving and self.node_id not in members:
                raise KVError("this node's ring record is missing (lease lost?); waiting for the heartbeat")
            ring = Ring.of(members)
            if self._ring is not None and self._ring.members == ring.members:
                ring = self._ring  # keeps its owner cache
            self._ring = ring
            pairs = {p.key[len(self.config_prefix):]: p for p in configs.pairs}
            self.pairs = pairs
            self.takeover.resharded(ring, ring_listing.revision)
            self.cache.forget_missing({p.key for p in configs.pairs})
            if self.target_shards is not None:
                self.target_shards.update(shard_view(self.node_id, members))
            self._step = "sharded configs to be found"
            sharded = self.sharded = await self._find_sharded(pairs)

            result = ReshardResult(ok=True)
            invalid: set[str] = set()
            desired: dict[str, InstanceConfig] = {}
            digests: dict[str, str] = {}
            if not leaving:
                owned = [(name, pair) for name, pair in pairs.items()
                         if name not in sharded and ring.owner(name) == self.node_id]
                if any(not self.cache.fresh(pair) for _, pair in owned):
                    # off the event loop: one stored config may take seconds to parse (heartbeats, writes)
                    await asyncio.to_thread(self.cache.parse_missing, owned)
                for name, pair in owned:
                    result.owned += 1
                    parsed = self.cache.get(name, pair)
                    if parsed.cfg is not None:
                        desired[name], digests[name] = parsed.cfg, parsed.digest
                        continue
                    result.invalid += 1
                    invalid.add(name)
                    _log.error("stored config is invalid; not (re)started", config=name, err=parsed.error)
                    running = self.manager.get(name)
                    digest = self.manager.digest(name)
                    if running is not None and digest is not None:  # the old version keeps running
                        desired[name], digests[name] = running.cfg, digest  # type: ignore[attr-defined]

            for name in sharded:  # on every ACTIVE node; while leaving, until the targets are handed off
                parsed = self.cache.get(name, pairs[name])
                if parsed.cfg is not None and (not leaving or self.manager.get(name) is not None):
                    desired[name], digests[name] = parsed.cfg, parsed.digest
            addresses = {mid: mem.address for mid, mem in members.items() if mem.state is State.ACTIVE}
            self.placement = Placement(self.node_id, ring, addresses, pairs.keys() - invalid, leaving,
                                       sharded=frozenset(sharded))

            held = {n for n in desired if n in sharded or self.claims.ours(claims.get(n), lease)}
            wanted = [n for n in desired if n not in held]
            self._step = f"the KV store to claim {len(wanted)} configs"
            won = await self.claims.acquire(wanted, lease, claims) if wanted else set()
            result.claimed = len(won)
            held |= won
            pending = set(desired) - held
            self._track_pending(pending, won)
            result.pending = len(pending)
            # pre-warm what waits for another node's claim: once it goes, only scraping has to begin
            self.manager.prepare({n: desired[n] for n in pending}, {n: digests[n] for n in pending})

            final = {n: desired[n] for n in held}
            stale = {c.name: c for c in claims.values() if c.node == self.node_id and c.name not in final}

            async def release_halted(names: list[str]) -> None:
                # as soon as their scraping and receiving stopped, before any start and before their WALs drain
                batch = [stale.pop(n) for n in names if n in stale]
                if batch:
                    result.released += await self.claims.release(batch)

            self._step = f"instances to start or stop ({len(final)} wanted on this node)"
            apply = asyncio.ensure_future(self.manager.apply(final, {n: digests[n] for n in final},
                                                             on_halted=release_halted))
            result.applied = await asyncio.shield(apply)  # a timeout must not cut an apply in half
            if stale:
                self._step = f"the KV store to release {len(stale)} claims"
                result.released += await self.claims.release(list(stale.values()))
            await self.manager.drop_prepared(keep=pending)
            if not leaving:  # after this node's own starts: on a join or a flood of configs, those come first
                self._prewarm_successors(ring, pairs)
            await self._mark_failures(final, claims, lease)
            result.running = len(self.manager.running())
            m.CONFIGS_OWNED.set(result.owned)
            m.CONFIGS_INVALID.set(result.invalid)
            m.CONFIGS_PENDING.set(result.pending)
            a = result.applied
            if a.started or a.stopped or a.restarted or result.released or result.pending:
                _log.info("resharded", owned=result.owned, started=len(a.started), stopped=len(a.stopped),
                          restarted=len(a.restarted), pending=result.pending, released=result.released,
                          members=len(ring.members))
            return result

    async def _find_sharded(self, pairs: dict[str, KVPair]) -> set[str]:
        if self.sharded_configs.fresh(pairs):
            return self.sharded_configs.scan(pairs, self.cache)
        return await asyncio.to_thread(self.sharded_configs.scan, pairs, self.cache)

    async def _mark_failures(self, final: dict[str, InstanceConfig], claims: dict[str, Claim],
                             lease: Lease) -> None:
        """Write each held claim's start failure (or its recovery) into the claim, for every node's ring API."""
        failures = self.manager.failures()
        changed = [(n, failures.get(n, "")) for n in final
                   if failures.get(n, "") != (claims[n].error if n in claims else "")]
        if changed:
            await asyncio.gather(*(self.claims.set_error(n, lease, err) for n, err in changed),
                                 return_exceptions=True)

    def _prewarm_successors(self, ring: Ring, pairs: dict[str, KVPair]) -> None:
        """In the background, parse the configs this node would own if any one other member left, so a
        graceful leave or a crash hands them over without a parse per config (~1 ms each) on the way."""
        key = (ring.members, len(pairs), max((p.mod_revision for p in pairs.values()), default=0))
        if key == self._successors_key:
            return
        self._successors_key = key
        if self._successors_task is not None:
            self._successors_task.cancel()
        self._successors_task = asyncio.create_task(self._parse_successors(ring, pairs),
                                                    name="cluster-prewarm-successors")

    async def _parse_successors(self, ring: Ring, pairs: dict[str, KVPair]) -> None:
        others = [mid for mid in ring.members if mid != self.node_id]
        if self.node_id not in ring.members or not others:
            return
        without = {mid: Ring(m for m in ring.members if m != mid) for mid in others}
        parsed = 0
        clock = time.monotonic
        slice_end = clock() + _SUCCESSOR_SLICE
        for i, (name, pair) in enumerate(pairs.items()):
            if i % 256 == 0:
                await asyncio.sleep(0)
            owner = ring.owner(name)
            if owner is None or owner == self.node_id or without[owner].owner(name) != self.node_id:
                continue
            if not self.cache.fresh(pair):
                self.cache.get(name, pair)
                parsed += 1
                if clock() >= slice_end:  # background work: at most about half a core, reshards first
                    await asyncio.sleep(_SUCCESSOR_SLICE)
                    slice_end = clock() + _SUCCESSOR_SLICE
        if parsed:
            _log.info("parsed the configs this node takes over if another node leaves", configs=parsed)

    def waiting_for(self, name: str) -> bool:
        """The last reshard wanted `name` here but another node held its claim."""
        return name in self._pending_since

    def note_claimed(self, won: set[str]) -> None:
        """The fast takeover claimed these: no longer waited for."""
        now = time.monotonic()
        for name in won:
            since = self._pending_since.pop(name, None)
            if since is not None:
                m.HANDOFF_WAIT.observe(now - since)

    def _track_pending(self, pending: set[str], won: set[str]) -> None:
        now = time.monotonic()
        for name in won:
            since = self._pending_since.pop(name, None)
            if since is not None:
                m.HANDOFF_WAIT.observe(now - since)
        for name in [n for n in self._pending_since if n not in pending]:
            del self._pending_since[name]
        for name in pending:
            self._pending_since.setdefault(name, now)

    async def release_all(self) -> None:
        """Leaving: stop every instance's scraping and receiving; the caller then revokes the lease (every
        claim goes with it) and only then waits for the WALs to drain."""
        async with self._lock:
            lease = self.membership.lease
            listing = asyncio.ensure_future(self.claims.list()) if lease is not None else None

            async def release(names: list[str]) -> None:
                # each batch of claims goes as its last scrape ends: successors start while the rest halts
                if listing is None:
                    return
                try:
                    claims = await asyncio.shield(listing)
                    await self.claims.release([claims[n] for n in names if self.claims.ours(claims.get(n), lease)])
                except KVError as exc:
                    _log.info("claims not released one by one; they go with the lease", err=str(exc))

            await self.manager.halt_all(on_halted=release)
            if listing is not None:
                listing.cancel()
                await asyncio.gather(listing, return_exceptions=True)


def _count_states(members: dict[str, Member]) -> None:
    for state in State:
        m.RING_MEMBERS.labels(state.value).set(sum(1 for mem in members.values() if mem.state is state))
