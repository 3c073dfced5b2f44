"""The contract of a WAL consumer that sends what it reads elsewhere (remote_write queues, Loki clients, the
log search store): how it keeps its progress marker and how it stops.

- **Marker policy.** A consumer advances its *acknowledged* position only after a batch was answered (sent,
  or refused for good). :class:`MarkerPolicy` stores that position in the consumer's
  :class:`~service.wal.marker.ProgressMarker` at most every ``interval`` seconds (0: after every batch), and
  always when forced (idle, stopping). After a crash at most ``interval`` seconds of batches are sent twice;
  nothing acknowledged into the WAL is lost. Retention keeps every record after :attr:`stored_position`.
- **Stop.** ``stop(flush_deadline=None)`` sends what is durable now for at most ``flush_deadline`` seconds (None:
  the consumer's configured default), stores the marker and returns; it never raises. What was not sent stays
  in the WAL for the next consumer of the same marker. ``cut_flush()`` ends a running stop at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Protocol

from .marker import ProgressMarker
from .record import Position


class WALConsumer(Protocol):
    @property
    def stored_position(self) -> Position | None:
        """What its marker holds (None: nothing read yet): retention keeps every record after it."""

    async def stop(self, flush_deadline: float | None = None) -> None: ...


class MarkerPolicy:
    """When a consumer's acknowledged position goes to its progress marker (see the module docstring)."""

    def __init__(self, marker: ProgressMarker, interval: float) -> None:
        self.marker = marker
        self.interval = interval
        self.stored: Position | None = None
        self._stored_at = 0.0

    async def load(self) -> Position | None:
        """The stored position, read off the event loop; where the consumer starts."""
        self.stored = await asyncio.to_thread(self.marker.load)
        self._stored_at = time.monotonic()
        return self.stored

    async def store(self, position: Position | None, *, force: bool = False) -> bool:
        """Store ``position`` unless it is stored already or the last attempt is under ``interval`` old (and
        not ``force``). True when the marker holds it afterwards. An OSError (disk full) propagates: the caller
        reports it, and a later call tries again (a failed attempt counts for the interval too, so a full disk
        costs one attempt per interval)."""
        if position is None or position == self.stored:
            return True
        now = time.monotonic()
        if not force and now - self._stored_at < self.interval:
            return False
        self._stored_at = now
        await self.marker.store_async(position)
        self.stored = position
        return True


async def finish_within(tasks: Iterable[asyncio.Future[None]], deadline: float) -> int:
    """Let ``tasks`` finish for at most ``deadline`` seconds, cancel the rest and wait for them to end; returns
    how many were cut. Never raises what a task raised."""
    tasks = list(tasks)
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline))
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(pending)
