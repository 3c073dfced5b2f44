"""The lease keeper on a real etcd: it keeps a lease alive while the event loop is alive but busy, and lets it
expire once the loop is frozen (the failure a lease exists to detect)."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.cluster.lease_keeper import LeaseKeeper
from service.cluster.membership import Member, Membership
from service.kv.config import EtcdConfig
from service.kv.etcd import EtcdKV
from service.kv.store import LeaseExpired
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.polling import wait_until

TTL = 2.0


@pytest.mark.slow
def test_keeper_renews_while_the_loop_lives_and_not_once_it_freezes(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        kv = EtcdKV([etcd.endpoint], dial_timeout=5.0)
        await kv.start()
        keeper = LeaseKeeper(EtcdConfig(endpoints=[etcd.endpoint]), period=0.25, ttl=TTL)
        try:
            lease = await kv.grant_lease(TTL)
            await kv.put("k", b"v", lease=lease)
            keeper.watch(lease.id)
            keeper.start()
            await asyncio.sleep(3 * TTL)  # no keepalive from this loop at all: only the keeper's
            assert keeper.renewals > 0 and await kv.get("k") is not None
            time.sleep(TTL / 2 + 0.2)  # the loop freezes: the keeper stops renewing
            time.sleep(TTL + 1.5)  # ... and etcd expires the lease (it checks every 500 ms)
            assert await kv.get("k") is None
            with pytest.raises(LeaseExpired):
                await lease.keepalive_once()
        finally:
            await keeper.stop()
            await kv.close()

    asyncio.run(scenario())


@pytest.mark.slow
def test_membership_leaves_renewal_to_the_keeper_and_still_sees_a_revoked_lease(etcd: EtcdServer) -> None:
    """With the keeper renewing, the heartbeat only rewrites the record (no second keepalive from the loop);
    a lease revoked behind the node's back is still noticed by that write, and the node registers again."""
    async def scenario() -> None:
        kv = EtcdKV([etcd.endpoint], dial_timeout=5.0)
        await kv.start()
        keeper = LeaseKeeper(EtcdConfig(endpoints=[etcd.endpoint]), period=0.25, ttl=TTL)
        new_leases: list[int] = []

        async def on_new_lease() -> None:
            assert membership.lease is not None
            new_leases.append(membership.lease.id)

        membership = Membership(kv, "keeper-test/ring/", "n1", "127.0.0.1:1", heartbeat_period=0.25,
                                lease_ttl=TTL, on_new_lease=on_new_lease, keeper=keeper)
        counts = {"keepalives": 0, "heartbeats": 0}
        keepalive, heartbeat = kv.keepalive_lease, membership.heartbeat

        async def counted_keepalive(lease_id: int) -> None:
            counts["keepalives"] += 1
            await keepalive(lease_id)

        async def counted_heartbeat() -> None:
            counts["heartbeats"] += 1
            await heartbeat()

        kv.keepalive_lease = counted_keepalive  # type: ignore[method-assign]
        membership.heartbeat = counted_heartbeat  # type: ignore[method-assign]
        try:
            await membership.register()
            membership.start()
            await wait_until(lambda: counts["heartbeats"] - counts["keepalives"] >= 3, timeout=30,
                             what="heartbeats that left the keepalive to the keeper thread")
            assert membership.lease is not None
            old = membership.lease.id
            await kv.revoke_lease(old)  # the lease is gone: the next heartbeat's write must notice
            await wait_until(lambda: new_leases and membership.lease is not None and membership.lease.id != old,
                             timeout=30, what="registered again under a new lease")
            record = await kv.get(membership.key)
            assert record is not None and Member.decode(record.value).lease == membership.lease.id
        finally:
            await membership.stop_heartbeat()
            await kv.close()

    asyncio.run(scenario())
