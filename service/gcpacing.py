"""Garbage-collector pacing for a node that holds thousands of instances.

CPython's default thresholds (700, 10, 10) run a young collection every 700 net allocations; starting an
instance allocates a few thousand objects (scrape pool, loop, label sets, queue and WAL state), so every
start paid for several collections, and the older generations, which hold every parsed config, were walked
again and again. bench/instance_start.py measured the collector at close to half the CPU of an instance
start (0.74 ms with the defaults, 0.40 ms with collection off). Objects alive once the node has started are
frozen (never scanned again) and young collections run every 50 000 allocations: reference cycles are still
collected, a little later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)


def pace() -> None:
    """Call once, when the node has started."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
