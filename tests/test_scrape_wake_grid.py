"""Scrape loops wake on a shared grid (loop.WAKE_GRID): never before their slot, at most one step after it,
and loops due within one step wake together."""

from __future__ import annotations

import random

from service.metrics.scrape.loop import on_grid


def test_grid_wake_is_the_plain_wake_rounded_up_to_a_grid_point() -> None:
    rng = random.Random(7)
    for _ in range(20000):
        now, delay = rng.uniform(0, 1e6), rng.uniform(0, 120)
        grid = rng.choice([0.05, 0.01, 0.002, 0.0005])
        plain = on_grid(now, delay, 0)
        assert plain == now + delay
        due = on_grid(now, delay, grid)
        assert plain - 1e-6 <= due <= plain + grid + 1e-6, (now, delay, grid, due)
        assert abs(due / grid - round(due / grid)) < 1e-4, (now, delay, grid, due)


def test_wakes_due_within_one_step_share_it() -> None:
    grid = 0.05
    shared = {on_grid(100.0, d, grid) for d in (0.011, 0.02, 0.049)} | {on_grid(100.03, 0.0, grid)}
    assert len(shared) == 1
    assert on_grid(100.0, 0.06, grid) > shared.pop()  # the next step's own
