"""How many shards a remote_write queue sends with: between ``min_shards`` and ``max_shards``, from what
the last interval showed (Prometheus re-decides every 10 s as well; its formula needs per-sample rates this
queue does not keep, so the rule here is simpler and says what it saw).

The queue sends in rounds: one batch of up to ``shards * max_samples_per_send`` samples, split by series into
``shards`` concurrent requests, the next round starting once every request is answered (see shards.py). So
a queue whose remote is slow to answer (latency, not bandwidth) keeps up only with more shards.

- **Behind:** the sender was busy ≥ 90 % of the interval and at least half of its batches were full. With
  the WAL's growth and backlog given (bytes), the shards go to what sends the growth plus the backlog over
  the next three intervals at the rate each shard sent (at most 8 times as many at once); without them they
  double. Never above ``max_shards``.
- **No gain:** if the interval after an increase sent no more samples per second (+10 %) than the one before
  it, the remote (or this process's CPU: splitting by series costs CPU) is the limit, not the round trips: go
  back, and try again only after ``hold`` intervals, twice as many after each try that did not help (up to
  ``max_hold``), so a queue that is CPU-bound rarely pays for a try.
- **Idle:** the sender was busy < 50 % of the interval: halve the shards, down to ``min_shards``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

BUSY_HIGH = 0.9
BUSY_LOW = 0.5
FULL_SHARE = 0.5
GAIN = 1.1
HISTORY = 32


@dataclass
class ShardController:
    min_shards: int
    max_shards: int
    interval: float = 10.0
    hold: int = 6  # intervals without increases after one that did not help
    max_hold: int = 90
    shards: int = 0
    _window_start: float = 0.0
    _busy: float = 0.0
    _samples: int = 0
    _rounds: int = 0
    _full: int = 0
    _before_increase: tuple[int, float] | None = None  # (shards, samples/s) before the last increase
    _held: int = 0
    _next_hold: int = 0
    _wal: tuple[int, int] | None = None  # (WAL end, acknowledged) bytes at the start of the interval
    # (shards, reason) of the last changes, for logs and tests; bounded, as a queue may run for months
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    changes: int = 0

    def __post_init__(self) -> None:
        self.min_shards = max(1, self.min_shards)
        self.max_shards = max(self.min_shards, self.max_shards)
        self.shards = min(max(self.shards or self.min_shards, self.min_shards), self.max_shards)

    @property
    def fixed(self) -> bool:
        return self.min_shards == self.max_shards

    def start(self, now: float) -> None:
        self._window_start = now

    def observe(self, busy: float, samples: int, full: bool) -> None:
        """One round: seconds spent sending it, samples sent, whether its batch was cut full."""
        self._busy += busy
        self._samples += samples
        self._rounds += 1
        self._full += full

    def update(self, now: float, wal: tuple[int, int] | None = None) -> int | None:
        """At the end of an interval, the new shard count if it changes, else None. ``wal``: the WAL's end
        and the acknowledged position now, as byte offsets."""
        elapsed = now - self._window_start
        if self.fixed or elapsed < self.interval:
            return None
        growth = behind_bytes = sent_bytes = None
        if wal is not None and self._wal is not None:
            growth, sent_bytes = (wal[0] - self._wal[0]) / elapsed, (wal[1] - self._wal[1]) / elapsed
            behind_bytes = wal[0] - wal[1]
        self._wal = wal
        busy = self._busy / elapsed
        rate = self._samples / elapsed
        full = self._rounds > 0 and self._full >= FULL_SHARE * self._rounds
        self._window_start, self._busy, self._samples, self._rounds, self._full = now, 0.0, 0, 0, 0
        held = self._held > 0
        self._held = max(0, self._held - 1)
        before, self._before_increase = self._before_increase, None
        if before is not None and rate < before[1] * GAIN and busy >= BUSY_HIGH:
            self._held = self._next_hold = min(self.max_hold, self._next_hold * 2 if self._next_hold else self.hold)
            return self._set(before[0], f"no gain from {self.shards} shards ({rate:.0f} vs {before[1]:.0f}/s)")
        if before is not None:
            self._next_hold = 0  # the last increase helped
        if busy >= BUSY_HIGH and full and self.shards < self.max_shards and not held:
            self._before_increase = (self.shards, rate)
            target = self.shards * 2
            if growth is not None and behind_bytes is not None and sent_bytes:
                need = growth + behind_bytes / (3 * self.interval)
                target = min(self.shards * 8, max(self.shards + 1, math.ceil(self.shards * need / sent_bytes)))
            return self._set(min(self.max_shards, target), f"behind: busy {busy:.0%}")
        if busy < BUSY_LOW and self.shards > self.min_shards:
            return self._set(max(self.min_shards, self.shards // 2), f"idle: busy {busy:.0%}")
        return None

    def _set(self, shards: int, reason: str) -> int | None:
        if shards == self.shards:
            return None
        self.shards = shards
        self.history.append((shards, reason))
        self.changes += 1
        return shards
