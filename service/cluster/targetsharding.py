"""The control side of per-target sharding: which stored configs are `sharding: targets`, the view of the
ring the scrape pools shard by, and the handoff of a leaving node.

A sharded config runs on every ACTIVE node and takes no claim (each node scrapes its own share of the
targets, see service/metrics/scrape/sharding.py); every other config keeps the claim-per-config rule.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from service.cluster.configcache import ConfigCache
from service.cluster.membership import Member, State
from service.configapi.store import decode_value
from service.kv.store import KVPair
from service.log import get_logger
from service.metrics.scrape.sharding import ShardView, TargetShards

_log = get_logger("cluster.targetsharding")
LEAVE_HANDOFF_TIMEOUT = 30.0  # the cutover is HANDOFF_DELAY away; this bounds a scrape stuck past it


class ShardedConfigs:
    """Names of the stored configs with `sharding: targets`, decided once per (key, mod_revision).

    Every node runs these, so every node must know which they are, not only the owner of the name. A
    config whose text does not mention `sharding` at all is not parsed (a gunzip and a substring search);
    one that does is parsed through the shared config cache."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, bool]] = {}

    def fresh(self, pairs: Mapping[str, KVPair]) -> bool:
        known = self._known
        return all((e := known.get(p.key)) is not None and e[0] == p.mod_revision for p in pairs.values())

    def scan(self, pairs: Mapping[str, KVPair], cache: ConfigCache) -> set[str]:
        """The sharded names among `pairs` (run it in a thread when not fresh: it may parse)."""
        known: dict[str, tuple[int, bool]] = {}
        out: set[str] = set()
        for name, pair in pairs.items():
            entry = self._known.get(pair.key)
            if entry is None or entry[0] != pair.mod_revision:
                entry = (pair.mod_revision, _sharded(name, pair, cache))
            known[pair.key] = entry
            if entry[1]:
                out.add(name)
        self._known = known
        return out


def _sharded(name: str, pair: KVPair, cache: ConfigCache) -> bool:
    try:
        text = decode_value(pair.value)
    except (ValueError, OSError, EOFError, zlib.error):
        return False
    if "sharding" not in text:
        return False
    parsed = cache.get(name, pair)
    return parsed.cfg is not None and parsed.cfg.target_sharded


def shard_view(node_id: str, members: Mapping[str, Member]) -> ShardView:
    """The ring the targets are sharded over (the config ring's ACTIVE members), timed by the latest state
    change among the members still present: a join's ACTIVE, a leave's LEAVING. A member that vanished
    (crash) leaves no newer time, so its targets move at once."""
    present = [m for m in members.values() if m.state in (State.ACTIVE, State.LEAVING)]
    active = tuple(sorted(m.id for m in present if m.state is State.ACTIVE))
    return ShardView(node_id, active, max((m.since for m in present), default=0.0))


async def hand_off_on_leave(shards: TargetShards, node_id: str, others: list[str], since: float) -> None:
    """This node is LEAVING (stamped `since`): give its targets to the other ACTIVE members and wait until
    they scraped their last slots here before the cutover, so the instances stop with nothing to hand over.
    Alone in the ring there is nobody to hand to: the targets leave the cluster with this node."""
    if shards.view is None or not others:
        return
    shards.update(ShardView(node_id, tuple(sorted(others)), since))
    if not await shards.handed_off(LEAVE_HANDOFF_TIMEOUT):
        _log.warning("targets not handed off in time; stopping anyway",
                     timeout=f"{LEAVE_HANDOFF_TIMEOUT:g}s")
