"""Shared helpers for the WAL tests."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY


def metric(name: str, instance: str) -> float:
    """Current value of an ``agent_wal_*`` series for ``instance`` (0 when absent)."""
    value = REGISTRY.get_sample_value(name, {"instance_name": instance})
    return 0.0 if value is None else value


def payload(i: int, size: int = 100) -> bytes:
    """A deterministic payload for record ``i``."""
    seed = f"rec-{i}-".encode()
    return (seed * (size // len(seed) + 1))[:size]


def segment_files(directory: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.isdigit())
