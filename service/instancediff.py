"""The desired-set diff both instance managers apply (metrics and logs): by name and config hash, in bulk.

A manager hashes each config's canonical form once and compares it with the hash of what runs under that name:
never one config against all others. The result says what to stop (gone), restart (changed) and start (new).
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass, field

import orjson

from service.config.schema import encode


def config_hash(cfg: object) -> str:
    """Hash of the config's canonical plain data (secrets included, so a changed password restarts the
    instance). JSON rather than YAML: the YAML emitter took 4 ms a config, most of a 10k-config reshard."""
    data = orjson.dumps(encode(cfg, show_secrets=True), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str)
    return hashlib.sha256(data).hexdigest()


@dataclass
class Diff:
    stop: list[str] = field(default_factory=list)  # running, no longer desired
    restart: list[str] = field(default_factory=list)  # running with another config hash
    start: list[str] = field(default_factory=list)  # desired, not running


def diff(running: Mapping[str, str], desired: Mapping[str, str], waiting: Container[str] = ()) -> Diff:
    """Compare ``running`` with ``desired`` (both name → config hash). Names in ``waiting`` (e.g. failed
    starts waiting for their retry) are not started."""
    return Diff(stop=[n for n in running if n not in desired],
                restart=[n for n, d in running.items() if n in desired and desired[n] != d],
                start=[n for n in desired if n not in running and n not in waiting])
