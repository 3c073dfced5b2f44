"""Prometheus relabeling: the config schema (shared by relabel_configs, metric_relabel_configs,
write_relabel_configs and the logs pipeline). The engine that applies rules lives beside it."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from service.config.errors import ConfigError
from service.config.schema import yaml_field
from service.re2 import Match, RE2SyntaxError, Regexp, compile_anchored
from service.re2 import compile as compile_re2

ACTIONS = (
    "replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
    "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
)
DEFAULT_REGEX = "(.*)"
DEFAULT_SEPARATOR = ";"
DEFAULT_REPLACEMENT = "$1"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Matched against user text (target_label, replacement): RE2, since its nested repetition backtracks
# exponentially in Python's `re` (a 22-character target label took minutes).
_TEMPLATE_TARGET = compile_re2(r"^(?:(?:[a-zA-Z_]|\$(?:\{[a-zA-Z0-9_]+\}|[a-zA-Z0-9_]+))+[a-zA-Z0-9_]*)+$")


def valid_label_name(name: str) -> bool:
    """Prometheus' (legacy) label name rule: [a-zA-Z_][a-zA-Z0-9_]*."""
    return _LABEL_NAME.fullmatch(name) is not None


def compile_regex(pattern: str) -> Regexp:
    """Compile a relabel (or label matcher) regex as Prometheus does: RE2, anchored as ^(?:pattern)$. Use
    `test` or `search` on the result; both match the whole string."""
    try:
        return compile_anchored(pattern)
    except RE2SyntaxError as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class RelabelConfig:
    __yaml_type__ = "relabel.Config"

    source_labels: list[str] = field(default_factory=list)
    separator: str = DEFAULT_SEPARATOR
    target_label: str = ""
    regex: str = DEFAULT_REGEX
    modulus: int = 0
    replacement: str = DEFAULT_REPLACEMENT
    action: str = yaml_field(default="replace")

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the compiled step (a closure), which compile_rule rebuilds on use: configs are
        pickled to the config validation process."""
        return {k: v for k, v in self.__dict__.items() if k != "_step"}

    def __deepcopy__(self, memo: dict[int, object]) -> RelabelConfig:
        """A copy keeps the compiled step (as deepcopy keeps any function): apply_defaults copies configs."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = value if key == "_step" else copy.deepcopy(value, memo)
        return new

    def check(self) -> None:
        """Validate as Prometheus' relabel.Config.Validate does, in the same order, and compile the regex."""
        self.action = self.action.lower()
        if self.action not in ACTIONS:
            raise ConfigError(f'unknown relabel action "{self.action}"')
        for name in self.source_labels:
            if not valid_label_name(name):
                raise ConfigError(f'"{name}" is not a valid label name')
        if self.modulus < 0:
            raise ConfigError(f"relabel modulus must not be negative, got {self.modulus}")
        self.compiled = compile_regex(self.regex)
        action, target = self.action, self.target_label
        if self.action == "hashmod" and self.modulus == 0:
            raise ConfigError("relabel configuration for hashmod requires non-zero modulus")
        if action in _NEEDS_TARGET and not target:
            raise ConfigError(f"relabel configuration for {action} action requires 'target_label' value")
        if action == "replace" and not (
            _TEMPLATE_TARGET.test(target) if "$" in target else valid_label_name(target)
        ):
            raise ConfigError(f'"{target}" is invalid \'target_label\' for {action} action')
        if action in _PLAIN_TARGET and not valid_label_name(target):
            raise ConfigError(f'"{target}" is invalid \'target_label\' for {action} action')
        if action in _PLAIN_TARGET and self.replacement != DEFAULT_REPLACEMENT:
            raise ConfigError(f"'replacement' can not be set for {action} action")
        if action == "labelmap" and not _TEMPLATE_TARGET.test(self.replacement):
            raise ConfigError(f'"{self.replacement}" is invalid \'replacement\' for {action} action')
        if action == "hashmod" and not valid_label_name(target):
            raise ConfigError(f'"{target}" is invalid \'target_label\' for {action} action')
        if action in ("keepequal", "dropequal") and (
            self.regex != DEFAULT_REGEX or self.modulus or self.separator != DEFAULT_SEPARATOR
            or self.replacement != DEFAULT_REPLACEMENT
        ):
            raise ConfigError(f"{action} action requires only 'source_labels' and `target_label`, "
                              "and no other fields")
        if action in ("labeldrop", "labelkeep") and (
            self.source_labels or target or self.modulus or self.separator != DEFAULT_SEPARATOR
            or self.replacement != DEFAULT_REPLACEMENT
        ):
            raise ConfigError(f"{action} action requires only 'regex', and no other fields")
        self.__dict__.pop("_step", None)


_NEEDS_TARGET = ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal")
_PLAIN_TARGET = ("lowercase", "uppercase", "keepequal", "dropequal")


# ---------------------------------------------------------------------------------------------------------
# The engine. A rule compiles once into a step: a function that edits a _Builder and says whether to keep.

Step = Callable[["_Builder"], bool]


class _Builder:
    """A label set being relabeled, modelled on Prometheus' labels.Builder.

    `labels` holds the current set. Names in `touched` were set or deleted by a rule: they sit after the
    untouched input labels, in the order Prometheus keeps its `add` list, which is the order labelmap
    visits them in (and so decides which of two colliding labelmap results wins)."""

    __slots__ = ("labels", "touched")

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = dict(labels)
        self.touched: set[str] = set()

    def set(self, name: str, value: str) -> None:
        if not value:
            self.delete(name)
            return
        labels = self.labels
        if name not in self.touched:
            self.touched.add(name)
            labels.pop(name, None)
        labels[name] = value

    def delete(self, name: str) -> None:
        self.touched.add(name)
        self.labels.pop(name, None)

    def snapshot(self) -> list[tuple[str, str]]:
        """Labels in Prometheus' Builder.Range order: untouched input labels sorted, then the added ones."""
        touched = self.touched
        if not touched:
            return sorted(self.labels.items())
        base = sorted(kv for kv in self.labels.items() if kv[0] not in touched)
        return base + [kv for kv in self.labels.items() if kv[0] in touched]


def _template(template: str, rx: Regexp) -> list[str | int]:
    """Parse a Go Regexp.Expand template into literals (str) and group numbers (int) for `rx`.

    Go's rules: `$$` is a literal `$`; `$name` takes the longest run of letters, digits and `_` (so `$1x` is
    the group named `1x`, not group 1 then "x"); `${name}` is explicit; a name of digits without a leading
    zero is a group number; an unknown name or number expands to ""; a malformed `$` stays literal."""
    parts: list[str | int] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            literal.append(template[i:])
            break
        literal.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            literal.append("$")
            i += 1
            continue
        brace = i < n and template[i] == "{"
        k = start = i + 1 if brace else i
        while k < n and (template[k].isalpha() or template[k].isdecimal() or template[k] == "_"):
            k += 1
        name = template[start:k]
        if not name or (brace and (k >= n or template[k] != "}")):
            literal.append("$")
            continue
        i = k + 1 if brace else k
        group = _group_number(name)
        if group is None:
            group = rx.groupindex.get(name, -1)
        if 0 <= group <= rx.groups:
            parts.append("".join(literal))
            literal = []
            parts.append(group)
    parts.append("".join(literal))
    return [p for p in parts if p != ""]


def _group_number(name: str) -> int | None:
    if not name.isascii() or not name.isdigit() or (name[0] == "0" and len(name) > 1) or len(name) > 9:
        return None
    return int(name)


def _expander(template: str, rx: Regexp) -> Callable[[Match], str]:
    parts = _template(template, rx)
    if not parts:
        return lambda m: ""
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, str):
            return lambda m: only
        return lambda m: m.group(only) or ""
    return lambda m: "".join([p if isinstance(p, str) else (m.group(p) or "") for p in parts])


def _go_lower(s: str) -> str:
    """strings.ToLower: per-rune simple case mapping (no final sigma, no multi-rune results)."""
    if s.isascii():
        return s.lower()
    return "".join(c.lower() if len(c.lower()) == 1 else ("i" if c == "\u0130" else c) for c in s)


def _go_upper(s: str) -> str:
    """strings.ToUpper: per-rune simple case mapping (ß stays ß)."""
    if s.isascii():
        return s.upper()
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in s)


def hashmod(value: str, modulus: int) -> int:
    """md5 of the value; the last 8 bytes read as a big-endian uint64, modulo `modulus`."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def _source(cfg: RelabelConfig) -> Callable[[dict[str, str]], str]:
    names, sep = tuple(cfg.source_labels), cfg.separator
    if not names:
        return lambda labels: ""
    if len(names) == 1:
        (only,) = names
        return lambda labels: labels.get(only, "")
    return lambda labels: sep.join([labels.get(n, "") for n in names])


def compile_rule(cfg: RelabelConfig) -> Step:
    """The step for one rule (validated and cached on the config object)."""
    step = cfg.__dict__.get("_step")
    if step is None:
        cfg.check()
        step = cfg.__dict__["_step"] = _build_step(cfg)
    return step


def _build_step(cfg: RelabelConfig) -> Step:
    action, rx, target, src = cfg.action, cfg.compiled, cfg.target_label, _source(cfg)
    match, test = rx.search, rx.test
    if action == "keep":
        return lambda b: test(src(b.labels))
    if action == "drop":
        return lambda b: not test(src(b.labels))
    if action == "keepequal":
        return lambda b: b.labels.get(target, "") == src(b.labels)
    if action == "dropequal":
        return lambda b: b.labels.get(target, "") != src(b.labels)
    if action == "replace":
        target_of, value_of = _expander(target, rx), _expander(cfg.replacement, rx)

        def replace(b: _Builder) -> bool:
            m = match(src(b.labels))
            if m is not None:
                name = target_of(m)
                if valid_label_name(name):
                    b.set(name, value_of(m))  # an empty value deletes the label
            return True
        return replace
    if action in ("lowercase", "uppercase"):
        convert = _go_lower if action == "lowercase" else _go_upper
        return lambda b: b.set(target, convert(src(b.labels))) or True
    if action == "hashmod":
        modulus = cfg.modulus
        return lambda b: b.set(target, str(hashmod(src(b.labels), modulus))) or True
    if action == "labelmap":
        name_of = _expander(cfg.replacement, rx)

        def labelmap(b: _Builder) -> bool:
            for name, value in b.snapshot():
                m = match(name)
                if m is not None:
                    b.set(name_of(m), value)
            return True
        return labelmap
    if action in ("labeldrop", "labelkeep"):
        drop_matching = action == "labeldrop"

        def labeldrop(b: _Builder) -> bool:
            for name in [n for n in b.labels if test(n) == drop_matching]:
                b.delete(name)
            return True
        return labeldrop
    raise ConfigError(f"relabel: unknown relabel action type {action!r}")


class Relabeler:
    """A list of rules compiled once, for hot paths: `Relabeler(rules).process(labels)`."""

    __slots__ = ("steps",)

    def __init__(self, rules: Sequence[RelabelConfig]) -> None:
        self.steps = tuple(compile_rule(r) for r in rules)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def process(self, labels: Mapping[str, str]) -> dict[str, str] | None:
        """The relabeled label set sorted by name, or None when a rule drops it. `labels` is not modified."""
        b = _Builder(labels)
        for step in self.steps:
            if not step(b):
                return None
        return dict(sorted(b.labels.items()))


def process(labels: Mapping[str, str], rules: Sequence[RelabelConfig]) -> dict[str, str] | None:
    """Apply `rules` in order (Prometheus relabel.Process); None means the label set was dropped."""
    return Relabeler(rules).process(labels)
