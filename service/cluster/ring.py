"""The ring: a consistent hash (uhashring, ketama) over the ACTIVE members' ids.

A config's owner is decided by its name alone, so editing a config never moves it, and every node that sees
the same membership computes the same owner. JOINING and LEAVING members own nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from uhashring import HashRing

from service.cluster.membership import Member, State


class Ring:
    def __init__(self, active_ids: Iterable[str]) -> None:
        self.members = tuple(sorted(set(active_ids)))
        self._ring = HashRing(nodes=list(self.members)) if self.members else None
        self._cache: dict[str, str] = {}

    @staticmethod
    def of(members: Mapping[str, Member]) -> Ring:
        return Ring(m.id for m in members.values() if m.state is State.ACTIVE)

    def owner(self, name: str) -> str | None:
        """The id of the member owning `name`; None when no member is ACTIVE."""
        if self._ring is None:
            return None
        owner = self._cache.get(name)
        if owner is None:
            owner = self._cache[name] = self._ring.get_node(name)
        return owner

    def owned_by(self, node_id: str, names: Iterable[str]) -> set[str]:
        return {n for n in names if self.owner(n) == node_id}
