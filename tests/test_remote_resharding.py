"""Dynamic shards: the controller's rule on given observations, and a queue against a remote that is slow to
answer (a peer that holds each request 50 ms: a latency no real receiver on loopback shows)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.metrics.remote.queue import RemoteWriteQueue
from service.metrics.remote.resharding import ShardController
from service.wal import WAL
from tests.helpers.aio import run
from tests.helpers.polling import wait_until
from tests.helpers.remote_helpers import CapturePeer, Reply, fill_wal, rw_config


def intervals(c: ShardController, start: float, windows: list[tuple[float, int, bool]]) -> list[int | None]:
    """Feed one round per window (busy seconds of a 10 s window, samples, full) and collect the decisions."""
    out, now = [], start
    for busy, samples, full in windows:
        c.observe(busy, samples, full)
        now += c.interval
        out.append(c.update(now))
    return out


def test_behind_doubles_up_to_max() -> None:
    c = ShardController(1, 8)
    c.start(0.0)
    # Busy and full, and every increase helps: 1 → 2 → 4 → 8, then stays at max.
    got = intervals(c, 0.0, [(10, 1000, True), (10, 2000, True), (10, 4000, True), (10, 8000, True),
                             (10, 8000, True)])
    assert got == [2, 4, 8, None, None] and c.shards == 8


def test_no_gain_goes_back_and_holds() -> None:
    c = ShardController(1, 16, hold=3)
    c.start(0.0)
    assert intervals(c, 0.0, [(10, 5000, True)]) == [2]
    # Twice the shards, the same rate: back to 1, and no new try for `hold` intervals.
    assert intervals(c, 10.0, [(10, 5100, True)]) == [1]
    assert intervals(c, 20.0, [(10, 5000, True)] * 3) == [None, None, None]
    assert intervals(c, 50.0, [(10, 5000, True)]) == [2]
    # A second try that does not help either: twice as long a hold.
    assert intervals(c, 60.0, [(10, 5000, True)]) == [1]
    assert intervals(c, 70.0, [(10, 5000, True)] * 6) == [None] * 6
    assert intervals(c, 130.0, [(10, 5000, True)]) == [2]
    assert [reason.split(":")[0] for _, reason in c.history][:3] == [
        "behind", "no gain from 2 shards (510 vs 500/s)", "behind"]


def test_idle_halves_down_to_min_and_partial_batches_do_not_add() -> None:
    c = ShardController(2, 16, shards=16)
    c.start(0.0)
    assert intervals(c, 0.0, [(1, 100, False), (1, 100, False), (1, 100, False), (1, 100, False)]) == [8, 4, 2, None]
    # Busy but with partial batches (cut by the send deadline): the remote keeps up, nothing to add.
    assert intervals(c, 40.0, [(10, 100, False)]) == [None]


def test_min_equal_to_max_is_fixed() -> None:
    c = ShardController(3, 3)
    c.start(0.0)
    assert intervals(c, 0.0, [(10, 1000, True), (0, 0, False)]) == [None, None] and c.shards == 3


def test_slow_remote_gets_more_shards_and_order_holds(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
        peer = await CapturePeer(lambda n: Reply(503) if n % 7 == 3 else Reply(delay=0.05)).start()
        cfg = rw_config(peer.url, "queue_config: {max_samples_per_send: 100, max_shards: 8, capacity: 2000, "
                                  "batch_send_deadline: 50ms, min_backoff: 5ms, max_backoff: 10ms}\n")
        await fill_wal(wal, 400, 50)  # 20 000 samples: ~10 s at one 100-sample request per 50 ms
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={}, shard_update_interval=0.3)
        await q.start()
        await wait_until(lambda: q.shards > 1, 10, what="more shards against the slow remote")
        await wait_until(lambda: peer.samples() == 20_000, 30, what="every sample delivered")
        assert peer.in_order() and peer.duplicates == 0 and len(peer.accepted) == 50
        assert q.samples_retried > 0  # the 503s were retried in place, across shard changes
        # With nothing left to send the sender idles, and the shards go back down.
        await wait_until(lambda: q.shards == 1, 10, what="shards back to min_shards when idle")
        await q.stop(5)
        await peer.stop()
        wal.close()
    run(scenario(), timeout=60)


def test_wal_growth_and_backlog_size_the_step() -> None:
    c = ShardController(1, 50)
    c.start(0.0)
    c.observe(10, 1000, True)
    assert c.update(10.0, wal=(0, 0)) == 2  # nothing to compare with yet: double
    c.observe(10, 2000, True)
    # The WAL grew 100 kB/s while 10 kB/s were sent, and 900 kB wait: (100k + 900k / 30 s) / 10k per 2 shards
    # wants 26 shards; one step goes at most 8 times as far.
    assert c.update(20.0, wal=(1_000_000, 100_000)) == 16
