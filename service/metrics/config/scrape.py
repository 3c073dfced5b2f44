"""Prometheus' scrape_config (2.42 fields), decoded and validated as `ScrapeConfig.UnmarshalYAML` does.

scrape_interval/scrape_timeout stay None when unset: the instance's `apply_defaults` fills them from the
global block, as Grafana Agent does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.metrics.config.discovery import SDFields
from service.metrics.config.http_client import HTTPClientFields
from service.relabel import RelabelConfig

_SIZE = re.compile(r"^(\d+)([KMGTPE]i?B|B)?$")
_SIZE_POWER = {"": 0, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
SCHEMES = ("http", "https")
LIMIT_FIELDS = ("sample_limit", "target_limit", "label_limit", "label_name_length_limit",
                "label_value_length_limit")


class ByteSize(str):
    """A size as written (`10MB`, `512KiB`, `1048576`); units are powers of 1024, as Prometheus'
    units.Base2Bytes reads them. `.bytes` is the value."""

    @property
    def bytes(self) -> int:
        return parse_byte_size(self)


def parse_byte_size(text: str) -> int:
    if not text:
        return 0
    match = _SIZE.match(text.strip())
    if not match:
        raise ConfigError(f"units: unknown unit in {text}")
    number, unit = match.group(1), match.group(2) or ""
    return int(number) * 1024 ** _SIZE_POWER[unit[:1]]


_NO_LIMIT = ByteSize("")


@dataclass
class _ScrapeHead:
    job_name: str = ""
    honor_labels: bool = False
    honor_timestamps: bool = True
    params: dict[str, list[str]] = field(default_factory=dict)
    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    metrics_path: str = "/metrics"
    scheme: str = "http"
    body_size_limit: ByteSize = _NO_LIMIT
    sample_limit: int = 0
    target_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0


@dataclass
class _ScrapeRelabel:
    relabel_configs: list[RelabelConfig] = field(default_factory=list)
    metric_relabel_configs: list[RelabelConfig] = field(default_factory=list)


@dataclass
class ScrapeConfig(SDFields, _ScrapeRelabel, HTTPClientFields, _ScrapeHead):
    """Fields in Prometheus' marshalling order: head, inline HTTP client, relabeling, discovery."""

    __yaml_type__ = "config.ScrapeConfig"

    def check(self) -> None:
        self.check_discovery()
        if not self.job_name:
            raise ConfigError("job_name is empty")
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"cannot unmarshal !!int `{value}` into uint")
        parse_byte_size(self.body_size_limit)
        self.check_http_client()
        if not self.relabel_configs:
            for group in self.static_configs:
                for target in group.targets:
                    if "/" in target:
                        raise ConfigError(f'"{target}" is not a valid hostname')
        if any(rule is None for rule in self.relabel_configs):
            raise ConfigError("empty or null target relabeling rule in scrape config")
        if any(rule is None for rule in self.metric_relabel_configs):
            raise ConfigError("empty or null metric relabeling rule in scrape config")
        if self.scheme not in SCHEMES:
            raise ConfigError(f'scheme must be "http" or "https" for scrape config with job name '
                              f'"{self.job_name}", got "{self.scheme}"')
