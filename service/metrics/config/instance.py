"""A metrics instance config (what the config API stores) and the `metrics.global` block.

Decoding follows Grafana Agent's `instance.Config` (strict YAML, Prometheus' sub-validators run while
decoding); `apply_defaults` is the agent's `ApplyDefaults`: same checks, same order, same messages, but on a
copy, so the config as written is never changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from service.config import schema
from service.config.durations import Duration, GoDuration
from service.config.errors import ConfigError
from service.metrics.config.discovery import check_label_names
from service.metrics.config.remote_write import RemoteWriteConfig
from service.metrics.config.scrape import ScrapeConfig
from service.relabel import RelabelConfig

DEFAULT_SCRAPE_INTERVAL = Duration(60)
DEFAULT_SCRAPE_TIMEOUT = Duration(10)
DEFAULT_EVALUATION_INTERVAL = Duration(60)
DEFAULT_WAL_TRUNCATE_FREQUENCY = GoDuration(3600)
DEFAULT_MIN_WAL_TIME = GoDuration(300)
DEFAULT_MAX_WAL_TIME = GoDuration(4 * 3600)
DEFAULT_REMOTE_FLUSH_DEADLINE = GoDuration(60)
SHARDING_MODES = ("", "config", "targets")


@dataclass
class GlobalConfig:
    """Prometheus' global block as the agent embeds it, plus the agent's global remote_write.

    Interval and timeout resolve as Prometheus' GlobalConfig.UnmarshalYAML does: interval 1m, timeout
    min(10s, interval), and an explicit timeout above the interval is an error.
    """

    __yaml_type__ = "instance.GlobalConfig"

    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    evaluation_interval: Duration | None = None
    query_log_file: str = ""
    external_labels: dict[str, str] = field(default_factory=dict)
    remote_write: list[RemoteWriteConfig] = field(default_factory=list)
    extra_scrape_metrics: bool = False

    def __post_init__(self) -> None:
        if not self.scrape_interval:
            self.scrape_interval = DEFAULT_SCRAPE_INTERVAL
        if self.scrape_timeout and self.scrape_timeout > self.scrape_interval:
            raise ConfigError("global scrape timeout greater than scrape interval")
        if not self.scrape_timeout:
            self.scrape_timeout = Duration(min(DEFAULT_SCRAPE_TIMEOUT, self.scrape_interval))
        if not self.evaluation_interval:
            self.evaluation_interval = DEFAULT_EVALUATION_INTERVAL

    def check(self) -> None:
        check_label_names(self.external_labels)
        if any(rw is None for rw in self.remote_write):
            raise ConfigError("empty or null remote write config section")


@dataclass
class InstanceConfig:
    __yaml_type__ = "instance.plain"

    name: str = ""
    host_filter: bool = False
    host_filter_relabel_configs: list[RelabelConfig] = field(default_factory=list)
    scrape_configs: list[ScrapeConfig] = field(default_factory=list)
    remote_write: list[RemoteWriteConfig] = field(default_factory=list)
    wal_truncate_frequency: GoDuration = DEFAULT_WAL_TRUNCATE_FREQUENCY
    min_wal_time: GoDuration = DEFAULT_MIN_WAL_TIME
    max_wal_time: GoDuration = DEFAULT_MAX_WAL_TIME
    remote_flush_deadline: GoDuration = DEFAULT_REMOTE_FLUSH_DEADLINE
    write_stale_on_shutdown: bool = False
    # Ours (Grafana Agent has no such field): "targets" runs the config on every ACTIVE node, each scraping
    # the targets the ring gives it; "" or "config" (default) runs it on the one node owning its name.
    sharding: str = ""

    def check(self) -> None:
        if any(rule is None for rule in self.host_filter_relabel_configs):
            raise ConfigError("empty or null relabeling rule in host_filter_relabel_configs")
        if self.sharding not in SHARDING_MODES:
            raise ConfigError(f"sharding: unknown value {json.dumps(self.sharding)} "
                              f"(want {' or '.join(m for m in SHARDING_MODES if m)})")

    @property
    def target_sharded(self) -> bool:
        return self.sharding == "targets"


def parse_instance(data: bytes | str, name: str, node: Any = None) -> InstanceConfig:
    """Strictly decode one instance config; the `name` in the body is replaced by `name`. `node`: the body
    already composed (yamlnodes.load_node)."""
    try:
        cfg = schema.loads(InstanceConfig, data, node)
    except ConfigError as exc:
        raise ConfigError(_go_unmarshal_text(str(exc))) from None
    cfg.name = name
    return cfg


def _go_unmarshal_text(message: str) -> str:
    """Type and unknown-field errors read as yaml.v2's `yaml: unmarshal errors:` list."""
    if message.startswith("line ") and ("not found in type" in message or "cannot unmarshal" in message):
        return f"yaml: unmarshal errors:\n  {message}"
    return message


def apply_defaults(cfg: InstanceConfig, global_cfg: GlobalConfig, *, in_place: bool = False) -> InstanceConfig:
    """A validated deep copy of cfg with the global defaults applied (Grafana Agent's ApplyDefaults).

    `in_place`: cfg itself, for a caller that just parsed it and keeps nothing else of it (the copy was 40 %
    of the CPU of parsing a small stored config)."""
    c = cfg if in_place else schema.copy(cfg)
    if not c.name:
        raise ConfigError("missing instance name")
    if c.wal_truncate_frequency <= 0:
        raise ConfigError("wal_truncate_frequency must be greater than 0s")
    if c.remote_flush_deadline <= 0:
        raise ConfigError("remote_flush_deadline must be greater than 0s")
    if c.min_wal_time > c.max_wal_time:
        raise ConfigError("min_wal_time must be less than max_wal_time")

    seen_jobs: set[str] = set()
    for sc in c.scrape_configs:
        if sc is None:
            raise ConfigError("empty or null scrape config section")
        if not sc.scrape_interval:
            sc.scrape_interval = Duration(global_cfg.scrape_interval or DEFAULT_SCRAPE_INTERVAL)
        if sc.scrape_timeout and sc.scrape_timeout > sc.scrape_interval:
            raise ConfigError(f"scrape timeout greater than scrape interval for scrape config with job name "
                              f"{_q(sc.job_name)}")
        if sc.scrape_interval > c.wal_truncate_frequency:
            raise ConfigError(f"scrape interval greater than wal_truncate_frequency for scrape config with "
                              f"job name {_q(sc.job_name)}")
        if not sc.scrape_timeout:
            global_timeout = global_cfg.scrape_timeout or DEFAULT_SCRAPE_TIMEOUT
            sc.scrape_timeout = Duration(min(global_timeout, sc.scrape_interval))
        if sc.job_name in seen_jobs:
            raise ConfigError(f"found multiple scrape configs with job name {_q(sc.job_name)}")
        seen_jobs.add(sc.job_name)

    if not c.remote_write:
        c.remote_write = schema.copy(global_cfg.remote_write)
    rw_names: set[str] = set()
    for rw in c.remote_write:
        if rw is None:
            raise ConfigError("empty or null remote write config section")
        generated = False
        if not rw.name:
            rw.name = f"{c.name}-{remote_write_hash(rw)[:6]}"
            generated = True
        if rw.name in rw_names:
            if generated:
                raise ConfigError("found two identical remote_write configs")
            raise ConfigError(f"found duplicate remote write configs with name {_q(rw.name)}")
        rw_names.add(rw.name)
    return c


def remote_write_hash(rw: RemoteWriteConfig) -> str:
    """md5 hex of the entry's canonical JSON (secrets included, so different credentials differ)."""
    encoded = schema.encode(rw, show_secrets=True)
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _q(text: str) -> str:
    """Go's %q for the strings that appear in messages."""
    return json.dumps(text, ensure_ascii=False)


def job_names(cfg: InstanceConfig) -> set[str]:
    return {sc.job_name for sc in cfg.scrape_configs if sc is not None}
