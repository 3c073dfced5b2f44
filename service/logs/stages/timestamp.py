"""The `timestamp` stage: set the entry's time from an extracted value.

Formats: Unix (seconds, optionally with up to 9 fraction digits), UnixMs, UnixUs, UnixNs, Go's named
layouts (RFC3339, RFC3339Nano, RFC1123, ...) and any Go reference layout ("2006-01-02 15:04:05"), read in
`location` when the text has no zone. On failure, `fudge` (default) sets the stream's last parsed time plus
1ns (keeping order), `skip` keeps the time the line was read."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.config.errors import ConfigError
from service.logs.stages.common import Record, Stage, opt_str, options, register, to_str
from service.logs.stages.golayout import compile_layout

MAX_STREAMS = 10_000     # last known timestamps kept for fudging (least recently used dropped)
Parser = Callable[[str], int]


def _unix(text: str) -> int:
    sec, dot, frac = text.partition(".")
    if dot:
        if len(frac) > 9 or not frac.isdigit():
            raise ValueError("can't parse epoch seconds with more than 9 digits after decimal point")
        return int(sec) * 1_000_000_000 + (-1 if sec.startswith("-") else 1) * int(frac.ljust(9, "0"))
    return int(sec) * 1_000_000_000


_EPOCH: dict[str, Parser] = {
    "Unix": _unix,
    "UnixMs": lambda t: int(t) * 1_000_000,
    "UnixUs": lambda t: int(t) * 1_000,
    "UnixNs": int,
}


def parser(fmt: str, location: ZoneInfo | None) -> Parser:
    return _EPOCH.get(fmt) or compile_layout(fmt, location)


@register("timestamp")
def timestamp_stage(cfg: Any) -> Stage:
    cfg = options("timestamp", cfg, ("source", "format", "fallback_formats", "location", "action_on_failure"))
    source = opt_str("timestamp", cfg, "source")
    if not source:
        raise ConfigError("timestamp stage: timestamp source value is required if timestamp is specified")
    fmt = opt_str("timestamp", cfg, "format")
    if not fmt:
        raise ConfigError("timestamp stage: timestamp format is required")
    location: ZoneInfo | None = None
    if cfg.get("location"):
        try:
            location = ZoneInfo(str(cfg["location"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timestamp stage: failed to load location specified: {cfg['location']}") from None
    action = opt_str("timestamp", cfg, "action_on_failure", "fudge")
    if action not in ("fudge", "skip"):
        raise ConfigError(f"timestamp stage: invalid timestamp action on failure: {action}")
    fallbacks = cfg.get("fallback_formats") or []
    if not isinstance(fallbacks, list):
        raise ConfigError("timestamp stage: fallback_formats must be a list")
    parsers = [parser(f, location) for f in [fmt, *(str(x) for x in fallbacks)]]
    last_known: OrderedDict[tuple[tuple[str, str], ...], int] = OrderedDict()

    def parse(text: str) -> int | None:
        for p in parsers:
            try:
                return p(text)
            except ValueError:
                continue
        return None

    def timestamp_(record: Record) -> bool:
        entry = record.entry
        value = record.extracted.get(source)
        ts = parse(to_str(value).strip()) if value is not None else None
        key = tuple(sorted(entry.labels.items()))
        if ts is not None:
            entry.timestamp_ns = ts
            last_known[key] = ts
            last_known.move_to_end(key)
            if len(last_known) > MAX_STREAMS:
                last_known.popitem(last=False)
        elif action == "fudge" and key in last_known:
            last_known[key] += 1
            entry.timestamp_ns = last_known[key]
        return True

    return timestamp_
