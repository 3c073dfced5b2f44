"""Parsing stages that fill the extracted map: `json` (JMESPath subset) and `regex` (named groups)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from service.config.errors import ConfigError
from service.logs.stages.common import Record, Stage, drop, opt_str, options, register, to_str
from service.re2 import Match, RE2SyntaxError, Regexp
from service.re2 import compile as re2_compile

_SEGMENT = re.compile(r'\s*(?:([A-Za-z_][A-Za-z0-9_]*)|"((?:[^"\\]|\\.)*)")((?:\s*\[-?\d+\])*)\s*')
_INDEX = re.compile(r"\[(-?\d+)\]")
Path = list[str | int]


def compile_path(expr: str) -> Path:
    """A JMESPath subset: `a.b`, `"dotted.key".c`, `items[0].name`, `a[-1]`. Anything else is refused."""
    path: Path = []
    pos = 0
    while True:
        m = _SEGMENT.match(expr, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"could not compile JMES expression: {expr!r} (supported: dotted keys, "
                              '"quoted" keys and [n] indexes)')
        path.append(m.group(1) if m.group(1) is not None else orjson.loads(f'"{m.group(2)}"'))
        path.extend(int(i) for i in _INDEX.findall(m.group(3)))
        pos = m.end()
        if pos == len(expr):
            return path
        if expr[pos] != ".":
            raise ConfigError(f"could not compile JMES expression: {expr!r}")
        pos += 1


def search(path: Path, data: Any) -> Any:
    """JMESPath semantics for the subset: a missing key or index gives None."""
    for step in path:
        if isinstance(step, str):
            if not isinstance(data, dict):
                return None
            data = data.get(step)
        else:
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return None
            data = data[step]
    return data


def _extracted_value(value: Any) -> Any:
    """What Promtail stores: numbers, strings, bools and null as they are, objects and arrays as JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return orjson.dumps(value).decode()


def _source_text(record: Record, source: str) -> str | None:
    if not source:
        return record.entry.line
    if source not in record.extracted:
        return None
    return to_str(record.extracted[source])


@register("json")
def json_stage(cfg: Any) -> Stage:
    cfg = options("json", cfg, ("expressions", "source", "drop_malformed"))
    expressions = cfg.get("expressions")
    if not expressions or not isinstance(expressions, dict):
        raise ConfigError("json stage: expressions are required")
    paths = {str(name): compile_path(str(expr) if expr else str(name)) for name, expr in expressions.items()}
    source = opt_str("json", cfg, "source")
    drop_malformed = bool(cfg.get("drop_malformed", False))

    def json_(record: Record) -> bool:
        text = _source_text(record, source)
        if text is None:
            return True
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return drop("malformed_json") if drop_malformed else True
        extracted = record.extracted
        for name, path in paths.items():
            extracted[name] = _extracted_value(search(path, data))
        return True

    return json_


def compile_re2(stage: str, pattern: Any) -> Regexp:
    """A stage's `expression`: RE2, unanchored, as Promtail compiles it (linear time on any line)."""
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{stage} stage: expression is required")
    try:
        return re2_compile(pattern)
    except RE2SyntaxError as exc:
        raise ConfigError(f"{stage} stage: could not compile regular expression {pattern!r}: {exc}") from None


@register("regex")
def regex_stage(cfg: Any) -> Stage:
    cfg = options("regex", cfg, ("expression", "source"))
    rx = compile_re2("regex", cfg.get("expression"))
    if not rx.groupindex:
        raise ConfigError("regex stage: regex expression requires at least one named capture group")
    names = list(rx.groupindex)
    source = opt_str("regex", cfg, "source")
    search_: Callable[[str], Match | None] = rx.search

    def regex_(record: Record) -> bool:
        text = _source_text(record, source)
        if text is None:
            return True
        m = search_(text)
        if m is not None:
            extracted = record.extracted
            for name in names:
                extracted[name] = m.group(name) or ""
        return True

    return regex_
