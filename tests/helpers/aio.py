"""Driving asyncio from plain sync tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a test body in a fresh event loop; a hang fails the test instead of the whole run."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def take(it: AsyncIterator[T], n: int, timeout: float = 10.0) -> list[T]:
    """The next n items of an async iterator, failing if they do not arrive in time."""
    async def collect() -> list[T]:
        return [await anext(it) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout)
