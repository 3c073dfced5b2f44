"""What every pipeline stage shares: the record a stage edits, option checking, value conversion, the
stage registry and Promtail's dropped-lines counter."""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter

from service.config.errors import ConfigError
from service.logs.entry import Entry
from service.relabel import valid_label_name

DROPPED_LINES = Counter("logentry_dropped_lines_total", "A count of all log lines dropped as a result of a "
                        "pipeline stage", ["reason"])


@dataclass(slots=True)
class Record:
    """An entry passing through a pipeline, with Promtail's `extracted` map (seeded with the labels)."""

    entry: Entry
    extracted: dict[str, Any]


# A compiled stage edits the record in place; False drops the entry.
Stage = Callable[[Record], bool]
Factory = Callable[[dict[str, Any]], Stage]

REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        REGISTRY[name] = factory
        return factory
    return add


def options(stage: str, cfg: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The stage's options as a dict, refusing unknown keys (strict, as Promtail decodes them)."""
    if cfg is None:
        return {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{stage} stage: config must be a mapping, got {type(cfg).__name__}")
    for key in cfg:
        if key not in allowed:
            raise ConfigError(f"{stage} stage: unknown option {key!r}")
    return dict(cfg)


def opt_str(stage: str, cfg: dict[str, Any], key: str, default: str = "") -> str:
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{stage} stage: {key} must be a string")
    return str(value)


def check_label_name(stage: str, name: Any) -> str:
    if not isinstance(name, str) or not valid_label_name(name):
        raise ConfigError(f"{stage} stage: invalid label name: {name}")
    return name


def to_str(value: Any) -> str:
    """Promtail's getString: strings as they are, numbers in Go's shortest decimal form, bools as
    true/false, anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        return format(decimal.Decimal(text), "f") if "e" in text else text
    return orjson.dumps(value).decode()


def drop(reason: str) -> bool:
    DROPPED_LINES.labels(reason).inc()
    return False
