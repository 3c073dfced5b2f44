"""Stored configs parsed once per KV revision: (key, mod_revision) → validated config and its digest.

A reshard with nothing changed then costs a dictionary lookup per config, not a YAML parse and a hash.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from service.config.errors import ConfigError
from service.configapi.store import decode_value
from service.instancediff import config_hash
from service.kv.store import KVPair
from service.metrics.config import GlobalConfig, InstanceConfig, apply_defaults, parse_instance
from service.relabel import compile_rule


@dataclass(frozen=True, slots=True)
class Parsed:
    mod_revision: int
    cfg: InstanceConfig | None
    digest: str
    error: str = ""


def _compile_rules(cfg: InstanceConfig) -> None:
    """Compile every relabel rule now (get() runs in a thread), not when the instance starts on the event
    loop: a config may hold tens of thousands of rules."""
    for sc in cfg.scrape_configs:
        for rule in (*sc.relabel_configs, *sc.metric_relabel_configs):
            compile_rule(rule)
    for rw in cfg.remote_write:
        for rule in rw.write_relabel_configs:
            compile_rule(rule)


class ConfigCache:
    def __init__(self, global_cfg: GlobalConfig) -> None:
        self._global = global_cfg
        self._entries: dict[str, Parsed] = {}

    def set_global(self, global_cfg: GlobalConfig) -> None:
        """The defaults changed (reload): every config is parsed again on next use."""
        if global_cfg is not self._global:
            self._global = global_cfg
            self._entries.clear()

    def fresh(self, pair: KVPair) -> bool:
        entry = self._entries.get(pair.key)
        return entry is not None and entry.mod_revision == pair.mod_revision

    def get(self, name: str, pair: KVPair) -> Parsed:
        entry = self._entries.get(pair.key)
        if entry is not None and entry.mod_revision == pair.mod_revision:
            return entry
        global_cfg = self._global
        try:
            # The agent's base validation only: the no-files rule is the API's, applied on PUT.
            cfg = apply_defaults(parse_instance(decode_value(pair.value), name), global_cfg, in_place=True)
            _compile_rules(cfg)
            entry = Parsed(pair.mod_revision, cfg, config_hash(cfg))
        except (ConfigError, ValueError, OSError, EOFError, zlib.error) as exc:
            entry = Parsed(pair.mod_revision, None, "", str(exc))
        if global_cfg is self._global:  # a reload meanwhile (parse_missing runs in a thread): not cached
            self._entries[pair.key] = entry
        return entry

    def parse_missing(self, items: list[tuple[str, KVPair]]) -> None:
        """Parse every (name, pair) not cached yet. Run it in a thread (asyncio.to_thread): a stored config
        can take seconds of CPU to parse, which must not hold up the event loop (heartbeats, writes)."""
        for name, pair in items:
            if not self.fresh(pair):
                self.get(name, pair)

    def forget_missing(self, live_keys: set[str]) -> None:
        if len(live_keys) < len(self._entries):
            for key in [k for k in self._entries if k not in live_keys]:
                del self._entries[key]
