"""The lease keeper on a real etcd: it keeps a lease alive while the event loop is alive but busy, and lets it
expire once the loop is frozen (the failure a lease exists to detect)."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.cluster.lease_keeper import LeaseKeeper
from service.kv.config import EtcdConfig
from service.kv.etcd import EtcdKV
from service.kv.store import LeaseExpired
from tests.helpers.etcd_server import EtcdServer

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
