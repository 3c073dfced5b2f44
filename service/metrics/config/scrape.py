"""Prometheus' scrape_config (2.42 fields, plus those of the Prometheus versions the last Grafana Agent releases
were built on, up to 2.55), decoded and validated as `ScrapeConfig.UnmarshalYAML` does.

scrape_interval/scrape_timeout stay None when unset: the instance's `apply_defaults` fills them from the
global block, as Grafana Agent does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.config.http_client import HTTPClientFields
from service.config.sizes import BASE2, parse_size
from service.metrics.config.discovery import SDFields
from service.relabel import RelabelConfig

SCHEMES = ("http", "https")
LIMIT_FIELDS = ("sample_limit", "target_limit", "label_limit", "label_name_length_limit",
                "label_value_length_limit", "native_histogram_bucket_limit", "keep_dropped_targets")


class ByteSize(str):
    """A size as written (`10MB`, `512KiB`, `1048576`); units are powers of 1024, as Prometheus'
    units.Base2Bytes reads them. `.bytes` is the value."""

    @property
    def bytes(self) -> int:
        return parse_byte_size(self)


def parse_byte_size(text: str) -> int:
    if not text:
        return 0
    size = parse_size(text.strip(), BASE2)
    if size is None:
        raise ConfigError(f"units: unknown unit in {text}")
    return size


_NO_LIMIT = ByteSize("")

# Prometheus 2.49's ScrapeProtocolsHeaders. PrometheusProto is accepted but never asked for: this node parses
# the text formats only (so a target is not invited to answer protobuf).
SCRAPE_PROTOCOLS = {
    "PrometheusProto": "",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
}
METRIC_NAME_SCHEMES = ("", "legacy", "utf8")


def accept_header(protocols: list[str]) -> str:
    """The Accept header for `scrape_protocols`, weighted as Prometheus 2.49's acceptHeader; "" = default."""
    if not protocols:
        return ""
    values, weight = [], len(SCRAPE_PROTOCOLS) + 1
    for proto in protocols:
        if SCRAPE_PROTOCOLS[proto]:
            values.append(f"{SCRAPE_PROTOCOLS[proto]};q=0.{weight}")
        weight -= 1
    values.append(f"*/*;q=0.{weight}")
    return ",".join(values)


@dataclass
class _ScrapeHead:
    job_name: str = ""
    honor_labels: bool = False
    honor_timestamps: bool = True
    track_timestamps_staleness: bool = False  # 2.48; accepted, ignored (docs/configuration.md)
    params: dict[str, list[str]] = field(default_factory=dict)
    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    scrape_protocols: list[str] = field(default_factory=list)  # 2.49: sets the Accept header
    scrape_classic_histograms: bool = False  # 2.45; accepted, ignored
    metrics_path: str = "/metrics"
    scheme: str = "http"
    enable_compression: bool = True  # 2.49: false asks for an uncompressed body
    body_size_limit: ByteSize = _NO_LIMIT
    sample_limit: int = 0
    target_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    native_histogram_bucket_limit: int = 0  # 2.45; accepted, ignored (no native histograms are scraped)
    native_histogram_min_bucket_factor: float = 0.0  # 2.55; accepted, ignored
    keep_dropped_targets: int = 0  # 2.47; accepted, ignored
    metric_name_validation_scheme: str = ""  # 2.55; accepted, ignored
    scrape_failure_log_file: str = ""  # 2.55; accepted, ignored (nothing is written)


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
        self._check_protocols()
        if self.metric_name_validation_scheme not in METRIC_NAME_SCHEMES:
            raise ConfigError(f"unknown name validation method specified, must be either 'legacy' or 'utf8', "
                              f"got {self.metric_name_validation_scheme}")
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

    def _check_protocols(self) -> None:
        seen: set[str] = set()
        for proto in self.scrape_protocols:
            if proto not in SCRAPE_PROTOCOLS:
                raise ConfigError(f"unknown scrape protocol {proto}, supported: "
                                  f"[{' '.join(sorted(SCRAPE_PROTOCOLS))}]")
            if proto in seen:
                raise ConfigError(f"duplicated protocol in scrape_protocols, got [{' '.join(self.scrape_protocols)}]")
            seen.add(proto)
        if self.scrape_protocols and not any(SCRAPE_PROTOCOLS[p] for p in self.scrape_protocols):
            raise ConfigError(f'scrape config with job name "{self.job_name}": scrape_protocols lists only '
                              "PrometheusProto, which this node cannot parse; add a text protocol")
