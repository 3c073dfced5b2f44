"""The timing helpers of bench/reshard.py: each measured span is counted once."""

from __future__ import annotations

import pytest

from bench.reshard import largest_gap, percentiles, since


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_since_counts_the_wait_once() -> None:
    clock = FakeClock()
    started = clock()
    clock.now += 0.5  # loading the configs

    def converge() -> None:
        clock.now += 0.8  # the convergence wait itself

    assert since(started, converge, clock) == pytest.approx(1.3)  # not 0.5 + 2 x 0.8


def test_percentiles_and_gaps() -> None:
    values = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00
    assert percentiles(values) == (0.5, 0.99, 1.0)
    assert percentiles([0.2]) == (0.2, 0.2, 0.2)
    with pytest.raises(ValueError):
        percentiles([])
    assert largest_gap([3.0, 1.0, 2.0, 6.5]) == 3.5
    assert largest_gap([1.0]) == 0.0
