"""Stages that filter: `drop` (conditions ANDed, as Promtail does) and `match` (a LogQL stream selector,
optionally with line filters, that runs nested stages or drops the entries it selects)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from service.config.durations import parse_go_duration
from service.config.errors import ConfigError
from service.config.sizes import DATASIZE, parse_size
from service.logs.stages.common import Record, Stage, drop, opt_str, options, register, to_str
from service.logs.stages.extract import compile_re2
from service.relabel import compile_regex


def longer_than_bytes(value: Any) -> int:
    """Bytes from 1024, "1024", "8KB", "8kib", "1.5MB" (units of 1024, as Promtail's datasize)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    size = parse_size(str(value), DATASIZE)
    if size is None:
        raise ConfigError(f"drop stage: invalid size {value!r}")
    return size


@register("drop")
def drop_stage(cfg: Any) -> Stage:
    keys = ("source", "separator", "expression", "value", "older_than", "longer_than", "drop_counter_reason")
    cfg = options("drop", cfg, keys)
    raw_source = cfg.get("source") or []
    sources = [str(s) for s in (raw_source if isinstance(raw_source, list) else [raw_source])]
    separator = opt_str("drop", cfg, "separator", ";")
    expression = opt_str("drop", cfg, "expression")
    value = None if cfg.get("value") is None else to_str(cfg["value"])
    if not (sources or expression or cfg.get("older_than") or cfg.get("longer_than") is not None):
        raise ConfigError("drop stage config must contain at least one of `source`, `expression`, "
                          "`older_than` or `longer_than`")
    if expression and value is not None:
        raise ConfigError("drop stage config error, `value` and `expression` cannot both be defined at the "
                          "same time.")
    if value is not None and not sources:
        raise ConfigError("drop stage config must contain `source` if `value` is specified")
    rx = compile_re2("drop", expression) if expression else None
    older = parse_go_duration(str(cfg["older_than"])) if cfg.get("older_than") else None
    longer = longer_than_bytes(cfg["longer_than"]) if cfg.get("longer_than") is not None else None
    reason = opt_str("drop", cfg, "drop_counter_reason", "drop_stage")

    def should_drop(record: Record) -> bool:
        entry = record.entry
        if longer is not None and len(entry.line.encode()) <= longer:
            return False
        if older is not None and entry.timestamp_ns >= time.time_ns() - int(older * 1e9):
            return False
        if sources:
            if any(s not in record.extracted for s in sources):
                return False
            text = separator.join(to_str(record.extracted[s]) for s in sources)
            if rx is not None:
                return rx.test(text)
            return value is None or text == value
        return rx is None or rx.test(entry.line)

    def drop_(record: Record) -> bool:
        return drop(reason) if should_drop(record) else True

    return drop_


# -- match -------------------------------------------------------------------------------------------------
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)\s*(,|(?=}))')
_FILTER = re.compile(r'\s*(\|=|!=|\|~|!~)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)\s*')
Matcher = Callable[[Record], bool]


def _unquote(text: str) -> str:
    return text[1:-1] if text.startswith("`") else orjson.loads(text)


def parse_selector(selector: str) -> list[Matcher]:
    """`{app="a", env=~"prod|dev"} |= "error" !~ "debug"` → predicates over labels and the line."""
    text = selector.strip()
    err = ConfigError(f"match stage: invalid selector {selector!r}")
    if not text.startswith("{"):
        raise err
    pos, preds = 1, []
    while True:
        close = re.compile(r"\s*}").match(text, pos)
        if close:
            pos = close.end()
            break
        m = _MATCHER.match(text, pos)
        if m is None:
            raise err
        name, op, value = m.group(1), m.group(2), _unquote(m.group(3))
        preds.append(_label_matcher(name, op, value))
        pos = m.end()
    if not preds:
        raise err
    while pos < len(text):
        m = _FILTER.match(text, pos)
        if m is None:
            raise err
        preds.append(_line_filter(m.group(1), _unquote(m.group(2))))
        pos = m.end()
    return preds


def _label_matcher(name: str, op: str, value: str) -> Matcher:
    if op in ("=~", "!~"):
        rx = compile_regex(value)
        want = op == "=~"
        return lambda r: rx.test(r.entry.labels.get(name, "")) == want
    want = op == "="
    return lambda r: (r.entry.labels.get(name, "") == value) == want


def _line_filter(op: str, value: str) -> Matcher:
    if op in ("|~", "!~"):
        rx = compile_re2("match", value)
        want = op == "|~"
        return lambda r: rx.test(r.entry.line) == want
    want = op == "|="
    return lambda r: (value in r.entry.line) == want


@register("match")
def match_stage(cfg: Any) -> Stage:
    from service.logs.stages.pipeline import compile_stages, run

    cfg = options("match", cfg, ("selector", "stages", "action", "pipeline_name", "drop_counter_reason"))
    selector = opt_str("match", cfg, "selector")
    if not selector:
        raise ConfigError("match stage: selector statement required for match stage")
    preds = parse_selector(selector)
    action = opt_str("match", cfg, "action", "keep")
    if action not in ("keep", "drop"):
        raise ConfigError("match stage: match stage action should be 'keep' or 'drop'")
    stages = compile_stages(cfg.get("stages"))
    if action == "keep" and not stages:
        raise ConfigError("match stage: match stage configuration must contain at least one stage")
    if action == "drop" and stages:
        raise ConfigError("match stage: match stage configured to drop entries cannot contains stages")
    reason = opt_str("match", cfg, "drop_counter_reason", "match_stage")

    def match_(record: Record) -> bool:
        if not all(p(record) for p in preds):
            return True
        if action == "drop":
            return drop(reason)
        return run(stages, record)

    return match_
