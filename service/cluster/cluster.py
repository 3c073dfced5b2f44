"""The cluster layer of one node: membership + claims + sharder over the instance manager.

The single-node embedded setup is a ring of one and runs the same code.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from service.cluster.claims import Claims
from service.cluster.config import ScrapingServiceConfig
from service.cluster.lease_keeper import LeaseKeeper
from service.cluster.membership import Membership, State, parse_members
from service.cluster.ring import Ring
from service.cluster.sharder import ReshardResult, Sharder
from service.cluster.targetsharding import hand_off_on_leave
from service.kv.store import KVError, KVStore
from service.log import get_logger
from service.metrics.config import GlobalConfig
from service.metrics.manager import InstanceManager
from service.metrics.scrape.sharding import TargetShards

_log = get_logger("cluster")


def claims_prefix(service: ScrapingServiceConfig) -> str:
    lifecycler = service.lifecycler
    if lifecycler.claims_prefix:
        return lifecycler.claims_prefix
    return lifecycler.ring.kvstore.prefix.rstrip("/") + "-claims/"


class Cluster:
    def __init__(self, kv: KVStore, manager: InstanceManager, service: ScrapingServiceConfig,
                 global_cfg: GlobalConfig, *, default_address: str = "", debounce: float = 0.05,
                 on_synced: Callable[[], None] | None = None, target_shards: TargetShards | None = None) -> None:
        lifecycler = service.lifecycler
        self.node_id = lifecycler.id or socket.gethostname()
        address = lifecycler.address or default_address or socket.gethostname()
        if lifecycler.port and ":" not in address:
            address = f"{address}:{lifecycler.port}"
        self.kv = kv
        self.manager = manager
        self.config_prefix = service.kvstore.prefix
        keeper = (LeaseKeeper(service.kvstore.etcd, period=float(lifecycler.heartbeat_period),
                              ttl=float(lifecycler.lease_ttl))
                  if service.kvstore.store == "etcd" and service.kvstore.etcd.endpoints else None)
        self.membership = Membership(kv, lifecycler.ring.kvstore.prefix, self.node_id, address,
                                     heartbeat_period=float(lifecycler.heartbeat_period),
                                     lease_ttl=float(lifecycler.lease_ttl), on_new_lease=self._on_new_lease,
                                     keeper=keeper)
        self.claims = Claims(kv, claims_prefix(service), self.node_id)
        self.sharder = Sharder(kv, manager, self.membership, self.claims, config_prefix=self.config_prefix,
                               global_cfg=global_cfg, reshard_interval=float(service.reshard_interval),
                               reshard_timeout=float(service.reshard_timeout), debounce=debounce,
                               on_synced=on_synced, target_shards=target_shards)
        self.target_shards = target_shards
        self.leave_timeout = max(float(service.cluster_reshard_event_timeout), 1.0)
        manager.on_failures_changed = lambda: self.sharder.request("instance-retry")

    @property
    def synced(self) -> bool:
        return self.sharder.synced

    def start(self) -> None:
        """Join and reshard in the background (the store may be unreachable; readiness waits for sync)."""
        self.sharder.start()

    async def _on_new_lease(self) -> None:
        self.sharder.request("lease")

    def set_global(self, global_cfg: GlobalConfig) -> None:
        self.sharder.cache.set_global(global_cfg)
        self.sharder.request("reload")

    async def reshard(self) -> ReshardResult:
        """Force a reshard and wait for it (answers a failed result if none finishes in time)."""
        limit = (self.sharder.reshard_timeout or 30.0) + 5.0
        try:
            async with asyncio.timeout(limit):
                return await self.sharder.reshard_now()
        except TimeoutError:
            return ReshardResult(error=f"no reshard finished within {limit:g}s")

    async def stop(self) -> None:
        """Graceful leave: LEAVING, halt own instances, then revoke the lease (claims and record go with it).
        The WALs drain afterwards (the node's manager.stop_all waits for them): handing over comes first."""
        try:
            async with asyncio.timeout(self.leave_timeout):
                await self.membership.set_state(State.LEAVING)
        except (KVError, TimeoutError) as exc:
            _log.warning("could not mark this node LEAVING", err=str(exc))
        if self.target_shards is not None:  # sharded configs' targets: scraped here until their cutover
            others = [n for n in self.sharder.placement.addresses if n != self.node_id]
            await hand_off_on_leave(self.target_shards, self.node_id, others, self.membership.since)
        await self.sharder.stop()
        await self.sharder.release_all()
        await self.membership.leave(self.leave_timeout)

    async def status(self) -> dict[str, Any]:
        """Members and, per config, its owner and whether the owner holds its claim (runs it)."""
        configs, ring_listing, claims = await asyncio.gather(
            self.kv.list(self.config_prefix), self.kv.list(self.membership.prefix), self.claims.list())
        members = parse_members([(p.key, p.value) for p in ring_listing.pairs])
        ring = Ring.of(members)
        owned: dict[str, int] = dict.fromkeys(members, 0)
        rows = []
        sharded = self.sharder.sharded
        for pair in configs.pairs:
            name = pair.key[len(self.config_prefix):]
            if name in sharded:
                rows.append(self._sharded_row(name, ring))
                continue
            owner = ring.owner(name) or ""
            claim = claims.get(name)
            holder = claim.node if claim is not None else ""
            error = claim.error if claim is not None else ""
            if owner:
                owned[owner] = owned.get(owner, 0) + 1
            held = bool(owner) and holder == owner
            row: dict[str, Any] = {"name": name, "owner": owner, "running": held and not error,
                                   "running_on": holder,
                                   "state": ("failed" if error else "running") if held else "pending"}
            if error:
                row["error"] = error
            rows.append(row)
        return {
            "self": self.node_id,
            "members": [{"id": mem.id, "address": mem.address, "state": mem.state.value,
                         "heartbeat": mem.heartbeat, "owned": owned.get(mem.id, 0)}
                        for mem in sorted(members.values(), key=lambda x: x.id)],
            "configs": rows,
            "reshards": list(self.sharder.history),
        }

    def _sharded_row(self, name: str, ring: Ring) -> dict[str, Any]:
        """A `sharding: targets` config: it runs on every ACTIVE node (`running_on`, comma-separated);
        `targets` is how many of its targets each one scrapes (every node discovers them all, so this node
        can tell). `running` is whether it runs here."""
        instance = self.manager.get(name)
        split = getattr(instance, "target_split", None)
        return {"name": name, "owner": "", "sharding": "targets", "running": instance is not None,
                "running_on": ",".join(ring.members), "state": "running" if instance is not None else "pending",
                "targets": split() if split is not None else {}}
