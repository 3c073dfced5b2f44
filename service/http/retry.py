"""When to send a failed request again: one backoff and one way to report an outcome for every sender from a
WAL (remote_write, Loki).

A sender's request either returns (accepted) or raises :class:`RecoverableError` (send it again after a wait)
or :class:`NonRecoverableError` (drop it); each carries the HTTP status, 0 when there was none.

Exponential backoff with jitter, as dskit's (Loki's clients): the n-th wait is drawn from ``[d, 2d)`` with ``d``
doubling from ``min_delay``; the range stops growing once its top reaches ``max_delay``, and no wait exceeds it.
Jitter keeps many senders that failed together from retrying together. A server's ``Retry-After`` (seconds or an
HTTP date) is honoured: the wait is at least that long, a hint over :data:`MAX_RETRY_AFTER` counting as that.
"""

from __future__ import annotations

import email.utils
import random
import time

MAX_RETRY_AFTER = 300.0  # seconds: a longer Retry-After is capped (a misconfigured server never parks a sender)


class RecoverableError(Exception):
    """The request may succeed if sent again; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class NonRecoverableError(Exception):
    """The remote refused the data for good (e.g. 400): the batch is dropped. ``status`` is the HTTP
    status (0 when there was none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), capped at
    :data:`MAX_RETRY_AFTER`; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value[:12]), int(MAX_RETRY_AFTER)))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, min(when.timestamp() - (time.time() if now is None else now), MAX_RETRY_AFTER))


class Backoff:
    """The waits between the attempts of one request; a fresh one per request (or :meth:`reset`)."""

    __slots__ = ("_high", "_low", "max_delay", "min_delay")

    def __init__(self, min_delay: float, max_delay: float) -> None:
        self.min_delay = max(0.0, min_delay)
        self.max_delay = max(self.min_delay, max_delay)
        self.reset()

    def reset(self) -> None:
        self._low = self.min_delay
        self._high = min(2 * self.min_delay, self.max_delay)

    def next(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt: jittered, at least ``retry_after`` (capped) when given."""
        wait = random.uniform(self._low, self._high) if self._high > self._low else self._low
        if self._high < self.max_delay:
            self._low = min(2 * self._low, self.max_delay)
            self._high = min(2 * self._high, self.max_delay)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait
