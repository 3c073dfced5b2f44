"""Byte sizes written in configs (`10MB`, `512KiB`, `1.5mb`, `1048576`): one parser, three notations.

Each field reads sizes the way the program it copies does, so the notation is data:

- `BASE2`: Prometheus' `units.Base2Bytes` (`body_size_limit`): whole numbers, `B` or `K`..`E` with an
  optional `i` and a required `B`, case as written, every unit a power of 1024;
- `DATASIZE`: Promtail's datasize (the drop stage's `longer_than`): decimals, any case, `k`..`t` with optional
  `i` and `b`, every unit a power of 1024;
- `SI_OR_IEC`: the search store's `max_size`: decimals, any case, `KB`..`TB` powers of 1000 and `KiB`..`TiB`
  powers of 1024.

`parse_size` answers None for text the notation does not accept; each caller words its own error, as the
program it copies does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SizeNotation:
    """`pattern` matches the whole text with groups (number, unit); `key` turns the unit into a `factors`
    key; `decimals` reads the number as a float (then truncates the product, as Go's conversions do)."""

    pattern: re.Pattern[str]
    factors: Mapping[str, int]
    key: Callable[[str], str]
    decimals: bool


def _first(unit: str) -> str:
    return unit[:1]


def _first_folded(unit: str) -> str:
    return unit.lower()[:1]


BASE2 = SizeNotation(re.compile(r"(\d+)([KMGTPE]i?B|B)?"),
                     {"": 1, "B": 1, **{u: 1024 ** (i + 1) for i, u in enumerate("KMGTPE")}}, _first, False)
DATASIZE = SizeNotation(re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*"),
                        {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}, _first_folded, True)
SI_OR_IEC = SizeNotation(
    re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE),
    {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
     "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
     "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4},
    str.lower, True)


def parse_size(text: str, notation: SizeNotation) -> int | None:
    """Bytes, or None when `text` is not a size in `notation`."""
    match = notation.pattern.fullmatch(text)
    if match is None:
        return None
    number, unit = match.group(1), match.group(2) or ""
    factor = notation.factors.get(notation.key(unit))
    if factor is None:  # a unit the pattern admits but the notation has no factor for ("5i")
        return None
    return int(float(number) * factor) if notation.decimals else int(number) * factor
