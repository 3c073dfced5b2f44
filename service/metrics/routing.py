"""Where a remote write for an instance this node does not run goes: the receiver's one question to the
rest of the node.

The receiver knows no ring and no KV store. The node builds a `WriteRouter` from what it has (the cluster's
placement as a `locate` function, the write forwarder, a `stored` check against the config store) and the
receiver asks it where a name goes. The answer is a `Destination`: forward to a peer, retry while the config is
being placed or while nobody can tell whether it exists, or refuse it because no such config exists.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.responses import Response

from service.metrics.forward import WriteForwarder

ABSENT_TTL = 2.0
ABSENT_MAX = 4096
UNREACHABLE_TTL = 1.0


class Verdict(enum.Enum):
    ABSENT = "absent"  # no such config: refuse the write (400)
    UNREACHABLE = "unreachable"  # the config store cannot say whether it exists: retry (503)
    PENDING = "pending"  # the config exists but runs nowhere reachable yet (being placed): retry (503)
    PEER = "peer"  # another node runs it: pass the write on to `address`


@dataclass(frozen=True)
class Destination:
    verdict: Verdict
    node: str = ""
    address: str = ""


ABSENT = Destination(Verdict.ABSENT)
UNREACHABLE = Destination(Verdict.UNREACHABLE)
PENDING = Destination(Verdict.PENDING)

# What the placement says about a name: a Destination, or None when it does not know the name (a config PUT
# a moment ago, or no reshard has succeeded since this node started), so the store is asked.
Locate = Callable[[str], Destination | None]
Stored = Callable[[str], Awaitable[bool | None]]


class WriteRouter:
    """Answers where a write for a name not running here goes.

    ``locate`` is the placement's view; ``stored`` asks the config store about a name the placement does not
    know (True/False, or None when the store cannot say). A name found missing is not asked about again for
    ABSENT_TTL seconds, so a sender writing to a name that does not exist costs the store one read every few
    seconds, not one per request; after the store failed to answer, it is not asked again for UNREACHABLE_TTL
    seconds."""

    def __init__(self, locate: Locate | None = None, forwarder: WriteForwarder | None = None,
                 stored: Stored | None = None) -> None:
        self.locate = locate
        self.forwarder = forwarder
        self.stored = stored
        self._absent: dict[str, float] = {}  # names the store did not hold, until when that answer stands
        self._unreachable_until = 0.0  # the store did not answer: 503 without asking it again until then

    async def route(self, name: str) -> Destination:
        if self.locate is None:
            return ABSENT
        destination = self.locate(name)
        if destination is not None:
            if destination.verdict is Verdict.PEER and self.forwarder is None:
                return PENDING
            return destination
        stored = await self._stored_now(name)
        if stored is None:
            return UNREACHABLE
        return PENDING if stored else ABSENT

    async def forward(self, destination: Destination, raw_path: str, headers: Mapping[str, str],
                      body: bytes) -> Response:
        """Passes the write on to the node `destination` names and answers with that node's answer."""
        if self.forwarder is None:
            raise RuntimeError("no write forwarder: route() answers PEER only when there is one")
        return await self.forwarder.forward(destination.address, raw_path, dict(headers), body, destination.node)

    async def _stored_now(self, name: str) -> bool | None:
        if self.stored is None:
            return False
        now = time.monotonic()
        if self._absent.get(name, 0.0) > now:
            return False
        if self._unreachable_until > now:
            return None
        stored = await self.stored(name)
        if stored is None:
            self._unreachable_until = time.monotonic() + UNREACHABLE_TTL
            return None
        if stored:
            return True
        if len(self._absent) >= ABSENT_MAX:
            self._absent.clear()
        self._absent[name] = now + ABSENT_TTL
        return False
