"""Target groups and the provider lifecycle shared by every discovery mechanism."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.log import get_logger
from service.tasks import cancel_and_wait


@dataclass
class TargetGroup:
    """Prometheus' targetgroup.Group: targets (each a label set with `__address__`), common labels, source."""

    source: str
    targets: list[dict[str, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def parse_groups(data: Any, source_prefix: str, extra: dict[str, str]) -> list[TargetGroup]:
    """Groups from decoded `[{"targets": [...], "labels": {...}}]` (file_sd and http_sd format)."""
    if not isinstance(data, list):
        raise ValueError("target groups must be a list")
    groups = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError("each target group must be a mapping")
        targets = entry.get("targets") or []
        labels = entry.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError("targets must be a list of strings")
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in labels.items()):
            raise ValueError("labels must be a mapping of strings")
        groups.append(TargetGroup(f"{source_prefix}:{i}", [{"__address__": t} for t in targets],
                                  {**labels, **extra}))
    return groups


class Provider:
    """Keeps `groups` (source -> group) current and calls `notify()` after each change."""

    kind = "provider"

    def __init__(self) -> None:
        self.groups: dict[str, TargetGroup] = {}
        self._notify: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger("discovery", mechanism=self.kind)

    def start(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        self._task = asyncio.get_running_loop().create_task(self._guarded(), name=f"discovery {self.kind}")

    async def _guarded(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a provider bug is logged; the other providers keep running
            self.log.exception("discovery provider stopped")

    async def run(self) -> None:
        """Override: refresh until cancelled."""

    def sorted_groups(self) -> list[TargetGroup]:
        """The groups in source order (the order targets are deduplicated in)."""
        return [g for _, g in sorted(self.groups.items())]

    def publish(self, groups: dict[str, TargetGroup]) -> None:
        if groups != self.groups:
            self.groups = groups
            self._notify()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
