"""A Promtail pipeline: `pipeline_stages` compiled once, then applied to each entry in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.config.errors import ConfigError
from service.logs.entry import Entry
from service.logs.stages.common import REGISTRY, Record, Stage


def compile_stages(stages: Any) -> list[Stage]:
    if stages is None:
        return []
    if not isinstance(stages, Sequence) or isinstance(stages, str):
        raise ConfigError("pipeline_stages must be a list")
    out: list[Stage] = []
    for item in stages:
        if not isinstance(item, Mapping) or not item:
            raise ConfigError("pipeline stage must be a mapping with one key, the stage type")
        if len(item) > 1:
            raise ConfigError("pipeline stage must contain only one key")
        ((name, cfg),) = item.items()
        factory = REGISTRY.get(name)
        if factory is None:
            raise ConfigError(f"Unknown stage type: {name}")
        out.append(factory(cfg))
    return out


class Pipeline:
    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages

    @classmethod
    def from_config(cls, stages: Sequence[Mapping[str, Any]] | None) -> Pipeline:
        """Compile `pipeline_stages` (a list of one-key mappings); ConfigError names what is wrong."""
        return cls(compile_stages(stages))

    def __bool__(self) -> bool:
        return bool(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def process(self, entry: Entry) -> Entry | None:
        """The entry after every stage (a new Entry; `entry` is not modified), or None when dropped."""
        out = Entry(dict(entry.labels), entry.timestamp_ns, entry.line, dict(entry.metadata))
        if not self.stages:
            return out
        return out if run(self.stages, Record(out, dict(out.labels))) else None


def run(stages: list[Stage], record: Record) -> bool:
    return all(stage(record) for stage in stages)
