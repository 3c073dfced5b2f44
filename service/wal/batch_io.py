"""Short blocking file calls (a WAL's open or close) run in batches: one worker-thread hop per batch.

``asyncio.to_thread`` per call costs a thread hand-off, a future chain and a loop wakeup each; with
thousands of instances starting or stopping at once those hops, and the GIL contention of six pool threads
doing tiny calls side by side, cost more CPU than the calls themselves (bench/instance_start.py, py-spy:
``WAL.open`` took 160 µs inline and 420 µs per call through ``to_thread``). Here the calls queued while a
batch runs form the next batch, run one after another on one pool thread, and their results come back to
the loop in one callback. The calls still never block the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# a call's future, the call, and what to do with its result when its waiter was cancelled meanwhile
_Item = tuple["asyncio.Future[Any]", Callable[[], Any], Callable[[Any], None] | None]


class _Batcher:
    """The calls waiting for one event loop, and whether a worker is taking them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[_Item] = []
        self.running = False

    def submit(self, item: _Item) -> None:
        with self.lock:
            self.items.append(item)
            if self.running:
                return
            self.running = True
        self.loop.run_in_executor(None, self._work)

    def _work(self) -> None:
        while True:
            with self.lock:
                batch, self.items = self.items, []
                if not batch:
                    self.running = False
                    return
            outcomes: list[tuple[bool, Any]] = []
            for _, call, _ in batch:
                try:
                    outcomes.append((True, call()))
                except BaseException as exc:  # handed to its waiter, like to_thread would
                    outcomes.append((False, exc))
            try:
                self.loop.call_soon_threadsafe(_resolve, batch, outcomes)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                for (_, _, discard), (ok, value) in zip(batch, outcomes, strict=True):
                    if ok and discard is not None:
                        discard(value)


def _resolve(batch: list[_Item], outcomes: list[tuple[bool, Any]]) -> None:
    for (future, _, discard), (ok, value) in zip(batch, outcomes, strict=True):
        if future.cancelled():
            if ok and discard is not None:
                discard(value)  # e.g. close a WAL opened for a waiter that gave up
        elif ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()


async def run_batched(call: Callable[[], T], *, discard: Callable[[T], None] | None = None) -> T:
    """``call()`` on a worker thread, batched with the other calls queued meanwhile. ``discard(result)``
    runs (on the loop) if the caller was cancelled before the result came back."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = _Batcher(loop)
    future: asyncio.Future[T] = loop.create_future()
    batcher.submit((future, call, discard))
    return await future
