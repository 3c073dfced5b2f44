"""Waiting on a condition with a deadline: the one way tests synchronise (never a bare sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (and return that); fail after `timeout` seconds.
    An exception from `condition` means "not yet" (the thing may still be starting), except AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except AssertionError:
            raise  # a hard failure (e.g. the process died), not "not yet"
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f": {last_exc}" if last_exc else ""))
        time.sleep(interval)


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                     interval: float = 0.02, what: str = "condition") -> None:
    """The event-loop twin of `wait_for`: `condition` may be sync or async; exceptions propagate."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
