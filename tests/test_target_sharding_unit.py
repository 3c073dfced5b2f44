"""Per-target sharding in one process: the ring over targets, and a handoff between two nodes' scrape
managers against real loopback targets (the views a cluster would publish are given by hand)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

from service.metrics.config.instance import parse_instance
from service.metrics.scrape.manager import ScrapeManager
from service.metrics.scrape.sharding import ShardView, TargetShards
from tests.helpers.aio import run
from tests.helpers.polling import wait_until
from tests.helpers.scrape_targets import decode_bodies, is_stale, scrape_config
from tests.helpers.sharding_targets import ManyTargets

KEYS = [bytes([i % 256, i // 256]) * 8 for i in range(3000)]


def test_sharding_field_is_validated() -> None:
    assert parse_instance("sharding: targets\n", "x").target_sharded
    assert not parse_instance("sharding: config\n", "x").target_sharded
    assert not parse_instance("scrape_configs: []\n", "x").target_sharded
    try:
        parse_instance("sharding: pods\n", "x")
    except ValueError as exc:
        assert str(exc).startswith("sharding: unknown value \"pods\""), exc
    else:
        raise AssertionError("sharding: pods was accepted")


def test_split_and_movement_on_join() -> None:
    shards = TargetShards()
    assert shards.owns(KEYS[0])  # no view yet (no cluster): every target is ours
    shards.update(ShardView("n0", ("n0", "n1", "n2")))
    before = {k: shards.owner(k) for k in KEYS}
    split = shards.split(KEYS)
    assert all(800 <= n <= 1200 for n in split.values()), split
    assert sum(shards.owns(k) for k in KEYS) == split["n0"]
    assert shards.cutover == 0.0  # no change time: a move happens at once
    assert shards.update(ShardView("n0", ("n0", "n1", "n2", "n3"), 1000.0))
    assert shards.cutover == 1000.0 + shards.handoff_delay
    moved = [k for k in KEYS if shards.owner(k) != before[k]]
    assert {shards.owner(k) for k in moved} == {"n3"}  # only to the joiner
    assert 0.18 * len(KEYS) <= len(moved) <= 0.32 * len(KEYS), len(moved)
    # the same members again (e.g. a LEAVING record deleted): nothing moves, the cutover stays
    assert not shards.update(ShardView("n0", ("n0", "n1", "n2", "n3"), 2000.0))
    assert shards.cutover == 1000.0 + shards.handoff_delay


def test_rendezvous_split_is_even_and_a_leave_moves_only_the_leavers_targets() -> None:
    """Every node computes the same owner from the same members, whichever node it is; the split of
    3000 targets over three is within a few percent of a third; a leave moves the leaver's targets and
    no other, spread over the rest."""
    views = {n: TargetShards() for n in ("n0", "n1", "n2")}
    for node, s in views.items():
        s.update(ShardView(node, ("n0", "n1", "n2")))
    owners = {k: views["n0"].owner(k) for k in KEYS}
    assert all(views[n].owner(k) == owners[k] for n in ("n1", "n2") for k in KEYS[:500])
    split = views["n0"].split(KEYS)
    assert all(900 <= n <= 1100 for n in split.values()), split
    assert sum(views[n].owns(k) for n in views for k in KEYS) == len(KEYS)  # each target on one node
    views["n0"].update(ShardView("n0", ("n0", "n2"), 1000.0))
    moved = [k for k in KEYS if views["n0"].owner(k) != owners[k]]
    assert {owners[k] for k in moved} == {"n1"} and len(moved) == split["n1"]
    new_owners = Counter(views["n0"].owner(k) for k in moved)
    assert set(new_owners) == {"n0", "n2"} and min(new_owners.values()) > 0.35 * len(moved), new_owners


def test_handoff_between_two_nodes_scrapes_each_slot_once() -> None:
    run(_handoff(), timeout=90)


async def _handoff() -> None:
    """Node a scrapes every target; node b joins: the targets the ring gives b are scraped by a up to the
    cutover slot and by b from it on, at the same phase, with no stale markers from a."""
    interval = 1.0
    server = ManyTargets(40)
    await asyncio.to_thread(server.start)
    sc = scrape_config(f"job_name: j\nscrape_interval: {interval:g}s\nscrape_timeout: {interval:g}s\n"
                       f"static_configs:\n{server.static_configs().replace('      ', '  ')}")
    bodies: dict[str, list[bytes]] = defaultdict(list)

    def appender(node: str):
        async def append(body: bytes) -> None:
            bodies[node].append(body)
        return append

    shards = {n: TargetShards(handoff_delay=1.5) for n in "ab"}
    for node, s in shards.items():
        s.update(ShardView(node, ("a",)))
    managers = {n: ScrapeManager("inst", [sc], appender(n), shards=shards[n]) for n in "ab"}
    try:
        assert managers["a"].offset_seed == managers["b"].offset_seed  # no host in a sharded seed
        for m in managers.values():
            await m.start()
        pool_a, pool_b = managers["a"].pools["j"], managers["b"].pools["j"]
        await wait_until(lambda: len(pool_a.loops) == 40 and not pool_b.loops, 20, what="a owns every target")
        before = dict(pool_a.loops)
        changed_at = time.time()
        for node, s in shards.items():
            s.update(ShardView(node, ("a", "b"), changed_at))
        cutover = changed_at + 1.5
        await wait_until(lambda: pool_b.loops and all(loop.scrapes >= 2 for loop in pool_b.loops.values())
                         and not pool_a.handing_off(), 30, what="b scraping its share, a done handing off")
        moved = set(pool_b.loops)
        assert moved and not moved & set(pool_a.loops) and len(moved) + len(pool_a.loops) == 40
        assert managers["a"].target_split() == managers["b"].target_split() == {"a": 40 - len(moved),
                                                                                "b": len(moved)}
        for key in moved:
            old, new = before[key], pool_b.loops[key]
            assert old.stop_at == cutover and new.not_before == cutover
            first = new.first_slot(cutover - 0.001)  # b's first slot: the first at or after the cutover
            assert cutover <= first < cutover + interval
            assert old._slot >= first - 1e-6  # a never reached a slot at or after b's first
        # what each node wrote: a no stale markers for what moved, b the moved targets' samples
        samples = {n: decode_bodies(bodies[n]) for n in "ab"}
        assert not any(is_stale(v) for _, v, _ in samples["a"])
        instances = {before[k].target.labels["instance"] for k in moved}
        assert instances == {labels["instance"] for labels, _, _ in samples["b"]}  # b wrote only its share
    finally:
        for m in managers.values():
            await m.stop()
        await asyncio.to_thread(server.stop)
