"""The log entry every logs source produces and every logs consumer accepts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Entry:
    labels: dict[str, str]       # stream labels (may include __path__, __tenant_id__ etc. until the instance drops __*)
    timestamp_ns: int
    line: str
    metadata: dict[str, str] = field(default_factory=dict)   # structured metadata


# Durably accepts a batch (the instance appends it to its WAL); raising signals back-pressure, and the
# caller keeps the batch and offers it again later.
Sink = Callable[[list[Entry]], Awaitable[None]]
