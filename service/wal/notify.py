"""Hand-off from the WAL's flush thread to the code waiting on it.

Waiters are futures keyed by the sequence number of the record they wait for: asyncio futures (resolved on
their own event loop, one ``call_soon_threadsafe`` per loop per sync, not one per waiter) or
``concurrent.futures.Future`` for threads. Tails subscribe an ``asyncio.Event`` that is set after every
sync. The WAL calls the registry under its own lock; ``dispatch`` runs outside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque

Waiter = asyncio.Future | concurrent.futures.Future


class SyncNotifier:
    """Futures waiting for durability, and tail events to poke after each sync."""

    def __init__(self) -> None:
        self._waiters: deque[tuple[int, Waiter]] = deque()
        self._events: dict[asyncio.AbstractEventLoop, set[asyncio.Event]] = {}

    # --- called under the WAL lock ---------------------------------------------------------------
    def add(self, seq: int, fut: Waiter) -> None:
        """Wait for ``seq``; sequence numbers are added in ascending order."""
        self._waiters.append((seq, fut))

    def take_upto(self, seq: int) -> list[Waiter]:
        """Remove and return the waiters whose record is at or before ``seq``."""
        out: list[Waiter] = []
        q = self._waiters
        while q and q[0][0] <= seq:
            out.append(q.popleft()[1])
        return out

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._events.setdefault(loop, set()).add(event)

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        events = self._events.get(loop)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[loop]

    def subscribed(self) -> dict[asyncio.AbstractEventLoop, list[asyncio.Event]]:
        """A copy of the subscriptions, to dispatch outside the lock."""
        return {loop: list(events) for loop, events in self._events.items()}

    # --- called outside the lock -----------------------------------------------------------------
    @staticmethod
    def dispatch(
        done: list[Waiter],
        events: dict[asyncio.AbstractEventLoop, list[asyncio.Event]],
        exc: BaseException | None = None,
    ) -> None:
        """Resolve ``done`` (with ``exc`` if given) and set ``events``, each on its own loop."""
        per_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for fut in done:
            if isinstance(fut, asyncio.Future):
                per_loop.setdefault(fut.get_loop(), []).append(fut)
            elif not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)
        for loop in per_loop.keys() | events.keys():
            try:
                loop.call_soon_threadsafe(_wake, per_loop.get(loop, ()), events.get(loop, ()), exc)
            except RuntimeError:  # that loop is closed; nobody is waiting there any more
                continue


def _wake(futs: list[asyncio.Future], events: list[asyncio.Event], exc: BaseException | None) -> None:
    for fut in futs:
        if fut.done():  # the awaiting task was cancelled
            continue
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
    for event in events:
        event.set()
