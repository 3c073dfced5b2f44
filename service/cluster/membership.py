"""Ring membership: this node's record under the ring prefix, kept alive by a lease.

Each node writes `<ring prefix><id>` = JSON {id, address, state, heartbeat, lease} attached to its own lease
and refreshes both every heartbeat period. A crashed node stops refreshing; when its lease expires the store
deletes its record (and every claim it held), so the others take over without anyone having to forget it by
hand (Grafana Agent's stale-ACTIVE failure mode). A clean shutdown revokes the lease: same effect, at once.

While the store is unreachable the heartbeat keeps retrying and nothing else happens. If the lease was lost
meanwhile (expired), a new one is granted, the record re-written and `on_new_lease` called so the owner can
re-claim what it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from service.cluster.lease_keeper import LeaseKeeper
from service.kv.store import KVError, KVStore, Lease, LeaseExpired
from service.log import RepeatedWarning, get_logger

_log = get_logger("cluster.membership")


class State(enum.StrEnum):
    JOINING = "JOINING"
    ACTIVE = "ACTIVE"
    LEAVING = "LEAVING"


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    address: str
    state: State
    heartbeat: float  # unix seconds of the last heartbeat written
    lease: int = 0
    since: float = 0.0  # unix seconds of the last state change (or registration): target handoffs time by it

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "address": self.address, "state": self.state.value,
                             "heartbeat": self.heartbeat, "lease": self.lease, "since": self.since})

    @staticmethod
    def decode(raw: bytes) -> Member:
        """Raises ValueError on a record that is not ours."""
        try:
            data = orjson.loads(raw)
            return Member(str(data["id"]), str(data.get("address", "")), State(data["state"]),
                          float(data.get("heartbeat", 0)), int(data.get("lease", 0)),
                          float(data.get("since", 0)))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a member record: {exc}") from None


def parse_members(pairs: list[tuple[str, bytes]]) -> dict[str, Member]:
    """Members by id from (key, value) pairs; records that do not decode are skipped."""
    out: dict[str, Member] = {}
    for _key, value in pairs:
        with contextlib.suppress(ValueError):
            member = Member.decode(value)
            out[member.id] = member
    return out


class Membership:
    def __init__(self, kv: KVStore, prefix: str, node_id: str, address: str, *, heartbeat_period: float,
                 lease_ttl: float, on_new_lease: Callable[[], Awaitable[None]] | None = None,
                 keeper: LeaseKeeper | None = None) -> None:
        self.kv = kv
        self.prefix = prefix
        self.node_id = node_id
        self.address = address
        self.heartbeat_period = heartbeat_period
        self.lease_ttl = lease_ttl
        self.on_new_lease = on_new_lease
        self.keeper = keeper  # renews the lease from a thread while the loop is busy (etcd only)
        self.state = State.JOINING
        self.lease: Lease | None = None
        self.last_heartbeat = 0.0
        self.since = 0.0
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    @property
    def key(self) -> str:
        return self.prefix + self.node_id

    @property
    def registered(self) -> bool:
        return self.lease is not None

    async def register(self) -> None:
        """Grant a lease and write our record (raises KVError when the store cannot be reached)."""
        async with self._write_lock:
            self.since = time.time()
            self.lease = await self.kv.grant_lease(self.lease_ttl)
            if self.keeper is not None:
                self.keeper.watch(self.lease.id)
            await self._write()
        _log.info("registered in the ring", id=self.node_id, address=self.address, state=self.state.value,
                  lease=self.lease.id)

    async def set_state(self, state: State) -> None:
        if state is not self.state:
            self.since = time.time()
        self.state = state
        async with self._write_lock:
            if self.lease is not None:
                await self._write()

    async def _write(self) -> None:
        assert self.lease is not None
        self.last_heartbeat = time.time()
        member = Member(self.node_id, self.address, self.state, self.last_heartbeat, self.lease.id, self.since)
        await self.kv.put(self.key, member.encode(), lease=self.lease)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat_loop(), name="cluster-heartbeat")
            if self.keeper is not None:
                self.keeper.start()

    async def _heartbeat_loop(self) -> None:
        failing = RepeatedWarning(_log, "heartbeat failed: KV store unreachable, retrying")
        while True:
            await asyncio.sleep(self.heartbeat_period)
            try:
                await self.heartbeat()
            except KVError as exc:  # unreachable: keep trying, change nothing else
                failing.failed(err=str(exc))
                continue
            failing.recovered("KV store reachable again: heartbeat sent")

    async def heartbeat(self) -> None:
        if self.lease is None:
            await self.register()
            await self._new_lease()
            return
        try:
            if self.keeper is None or not self.keeper.renewed(self.lease.id):
                # The keeper thread renews on its own stream; this one is the fallback when it has not (its
                # stream is down, or there is no keeper). A lost lease still shows: the write below fails.
                await self.lease.keepalive_once()
            async with self._write_lock:
                await self._write()
        except LeaseExpired:
            _log.warning("membership lease expired; registering again", lease=self.lease.id)
            self.lease = None
            await self.register()
            await self._new_lease()

    async def _new_lease(self) -> None:
        if self.on_new_lease is not None:
            await self.on_new_lease()

    async def stop_heartbeat(self) -> None:
        if self.keeper is not None:
            await self.keeper.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def leave(self, timeout: float = 5.0) -> None:
        """Revoke the lease: our record and every claim attached to it disappear in one step."""
        await self.stop_heartbeat()
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await lease.revoke()
            _log.info("left the ring", id=self.node_id)
        except (KVError, TimeoutError) as exc:
            _log.warning("could not revoke the membership lease; it will expire", err=str(exc),
                         ttl=self.lease_ttl)
