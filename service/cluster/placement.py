"""Where a config runs, as this node's last reshard saw it: what a write for an instance that does not run
here needs to know (forward it to the owner, ask the sender to retry, or refuse it).

Built once per reshard from what the reshard already listed, so looking a name up costs a dict access and
a ring lookup, never a KV read.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from service.cluster.ring import Ring


class Where(enum.Enum):
    UNKNOWN = "unknown"  # no such config in the store (or its stored YAML is invalid): nothing will run it
    HERE = "here"  # owned by this node and not running yet (waiting for the previous owner to let go)
    ELSEWHERE = "elsewhere"  # owned by another ACTIVE node: `address` reaches it
    UNPLACED = "unplaced"  # a valid config no ACTIVE node owns right now (the ring is changing)


@dataclass(frozen=True)
class Location:
    where: Where
    node: str = ""
    address: str = ""


@dataclass
class Placement:
    node_id: str
    ring: Ring | None = None
    addresses: Mapping[str, str] = field(default_factory=dict)  # ACTIVE member id → host:port
    known: Collection[str] = ()  # names of the valid configs in the store
    leaving: bool = False
    sharded: Collection[str] = ()  # sharding: targets configs: every ACTIVE node runs them

    def locate(self, name: str) -> Location:
        if name not in self.known:
            return Location(Where.UNKNOWN)
        if name in self.sharded and not self.leaving:
            return Location(Where.HERE, self.node_id)  # runs here too (starting): each node has its WAL
        owner = self.ring.owner(name) if self.ring is not None else None
        if owner is None:
            return Location(Where.UNPLACED)
        if owner == self.node_id and not self.leaving:
            return Location(Where.HERE, owner)
        address = self.addresses.get(owner, "")
        return Location(Where.ELSEWHERE, owner, address) if address else Location(Where.UNPLACED, owner)
