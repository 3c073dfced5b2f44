"""Per-target sharding (ours): which targets of a `sharding: targets` config this node scrapes, and when a
target that moves between nodes changes hands.

The cluster publishes a :class:`ShardView` after every reshard: the ACTIVE members (the ids of the config
ring) and when the ring last changed. A target's owner is the member with the highest hash of (member,
target key) (rendezvous hashing; the key is the target's final label set and URL), so every node computes
the same owner without asking the others, a join moves to the joiner about 1/N of the targets and a leave
moves only the leaver's. Unlike the config ring's ketama points (uhashring, 160 per member: one of three
nodes scraped 37% of the targets in bench/target_sharding.py), it splits them as evenly as chance allows
(within a few percent at 3000 targets over three), and each node's CPU follows its share.

Handoff without double scrapes or gaps: a sharded config's scrape offsets do not depend on the host, so
every node would scrape a target at the same slots (k·interval + an offset from the target's hash). When
the ring changes at `changed_at` (the state change stamped in a member's ring record), the old and the new
owner both take `cutover = changed_at + handoff_delay`: the old owner scrapes the slots before it and then
lets the target go, the new owner scrapes the slots from it on. Both learn of the change within a reshard,
before the cutover, so each slot is scraped once. A member that vanished (kill -9: its lease expired) has
nobody to hand over: its record carries no new time, the cutover is in the past, and its targets are
scraped from the next slot on. Nothing is written to the KV store per target.

This module is data path: it knows nothing about KV stores; the control path feeds it views.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

HANDOFF_DELAY = 3.0  # seconds from a ring change to the cutover: time for every node to learn of it


@dataclass(frozen=True, slots=True)
class ShardView:
    node_id: str
    members: tuple[str, ...]  # ACTIVE member ids, sorted (the config ring's members)
    changed_at: float = 0.0  # unix time of the state change that made this ring; 0: unknown (no handoff)


class HandingOff(Protocol):
    def handing_off(self) -> int:
        """How many of its loops still scrape targets that moved away."""

    def synced_to(self) -> ShardView | None:
        """The view its last sync applied."""


class TargetShards:
    """This node's share of every sharded config's targets (one per node, shared by the sharded pools).

    Without a view (no cluster, or before the first reshard) the node owns every target."""

    def __init__(self, handoff_delay: float = HANDOFF_DELAY) -> None:
        self.handoff_delay = handoff_delay
        self.view: ShardView | None = None
        self.cutover = 0.0  # unix time from which the current view's owners scrape moved targets
        self._members: list[tuple[str, hashlib._Hash]] = []  # each member and its hash state, seeded
        self._owners: dict[bytes, str] = {}
        self._listeners: dict[int, tuple[Callable[[], None], HandingOff]] = {}

    # control path side ----------------------------------------------------------------------------
    def update(self, view: ShardView) -> bool:
        """Apply a view; True when the members changed (the pools then re-sync). A view with the same
        members keeps the earlier cutover: nothing moves."""
        old = self.view
        if old is not None and old.members == view.members and old.node_id == view.node_id:
            return False
        self.view = view
        self.cutover = view.changed_at + self.handoff_delay if view.changed_at else 0.0
        self._members = [(m, hashlib.blake2b(m.encode(), digest_size=8)) for m in view.members]
        self._owners = {}
        for notify, _ in list(self._listeners.values()):
            notify()
        return True

    async def handed_off(self, timeout: float) -> bool:
        """Wait until every sharded pool applied the current view and its moved targets' last slots before
        the cutover were scraped (a leaving node calls this before it stops its instances)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pools = [pool for _, pool in self._listeners.values()]
            if all(p.synced_to() is self.view and not p.handing_off() for p in pools):
                return True
            await asyncio.sleep(0.05)
        return False

    # data path side -------------------------------------------------------------------------------
    def subscribe(self, notify: Callable[[], None], pool: HandingOff) -> None:
        self._listeners[id(pool)] = (notify, pool)

    def unsubscribe(self, pool: HandingOff) -> None:
        self._listeners.pop(id(pool), None)

    def owner(self, key: bytes) -> str | None:
        """The member scraping the target with this key (Target.key: its final labels and URL)."""
        owner = self._owners.get(key)
        if owner is None:
            if not self._members:
                return None
            owner = self._owners[key] = rendezvous_owner(self._members, key)
        return owner

    def owns(self, key: bytes) -> bool:
        view = self.view
        if view is None or not view.members:
            return True
        return self.owner(key) == view.node_id

    def split(self, keys: Iterable[bytes]) -> dict[str, int]:
        """How many of these targets each member scrapes."""
        view = self.view
        if view is None or not view.members:
            return {view.node_id if view else "": sum(1 for _ in keys)}
        out = dict.fromkeys(view.members, 0)
        for key in keys:
            owner = self.owner(key)
            if owner is not None:
                out[owner] += 1
        return out


def rendezvous_owner(members: list[tuple[str, hashlib._Hash]], key: bytes) -> str:
    """The member whose seeded hash of `key` is highest (ties: the first in member order)."""
    best, best_score = members[0][0], b""
    for member, seeded in members:
        h = seeded.copy()
        h.update(key)
        score = h.digest()
        if score > best_score:
            best, best_score = member, score
    return best
