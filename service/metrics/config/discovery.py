"""Service discovery blocks of a scrape config.

static, file, http and dns discovery are typed and validated as Prometheus does. Every other Prometheus
(2.42) discovery key is accepted as opaque data so a config using it parses; the no-files check then vets
or rejects it by name. The flattened order (`sd_entries`) is Prometheus' own: keys sorted, entries in
order, all static_configs coalesced into one entry at the end.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.config.http_client import HTTPClientFields, check_url
from service.metrics.config.kubernetes import KubernetesSDConfig
from service.metrics.config.sdcheck import check_entry

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FILE_SD_NAME = re.compile(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$")
SD_SUFFIX = "_sd_configs"
STATIC_KEY = "static_configs"
_FIVE_MINUTES = Duration(300)
_THIRTY_SECONDS = Duration(30)
_ONE_MINUTE = Duration(60)


def check_label_names(labels: dict[str, str]) -> None:
    for name in labels:
        if not LABEL_NAME.match(name):
            raise ConfigError(f'"{name}" is not a valid label name')


@dataclass
class StaticConfig:
    __yaml_type__ = "targetgroup.Group"

    targets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        check_label_names(self.labels)


@dataclass
class FileSDConfig:
    __yaml_type__ = "file.plain"

    files: list[str] = field(default_factory=list)
    refresh_interval: Duration = _FIVE_MINUTES

    def check(self) -> None:
        if not self.files:
            raise ConfigError("file service discovery config must contain at least one path name")
        for name in self.files:
            if not _FILE_SD_NAME.match(name):
                raise ConfigError(f'path name "{name}" is not valid for file discovery')


@dataclass
class DNSSDConfig:
    __yaml_type__ = "dns.plain"

    names: list[str] = field(default_factory=list)
    refresh_interval: Duration = _THIRTY_SECONDS
    type: str = "SRV"
    port: int = 0

    def check(self) -> None:
        if not self.names:
            raise ConfigError("DNS-SD config must contain at least one SRV record name")
        kind = self.type.upper()
        if kind in ("A", "AAAA", "MX"):
            if self.port == 0:
                raise ConfigError("a port is required in DNS-SD configs for all record types except SRV")
        elif kind != "SRV":
            raise ConfigError(f"invalid DNS-SD records type {self.type}")


@dataclass
class _HTTPSDHead:
    url: str = ""
    refresh_interval: Duration = _ONE_MINUTE


@dataclass
class HTTPSDConfig(HTTPClientFields, _HTTPSDHead):
    __yaml_type__ = "http.plain"

    def check(self) -> None:
        if not self.url:
            raise ConfigError("URL is missing")
        check_url(self.url)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError("URL scheme must be 'http' or 'https'")
        if not parts.netloc:
            raise ConfigError("host is missing in URL")
        self.check_http_client()


@dataclass
class SDFields:
    """Every discovery key a scrape config accepts, in Prometheus' (sorted) order."""

    azure_sd_configs: list[Any] = field(default_factory=list)
    consul_sd_configs: list[Any] = field(default_factory=list)
    consulagent_sd_configs: list[Any] = field(default_factory=list)
    digitalocean_sd_configs: list[Any] = field(default_factory=list)
    dns_sd_configs: list[DNSSDConfig] = field(default_factory=list)
    docker_sd_configs: list[Any] = field(default_factory=list)
    dockerswarm_sd_configs: list[Any] = field(default_factory=list)
    ec2_sd_configs: list[Any] = field(default_factory=list)
    eureka_sd_configs: list[Any] = field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = field(default_factory=list)
    gce_sd_configs: list[Any] = field(default_factory=list)
    hetzner_sd_configs: list[Any] = field(default_factory=list)
    http_sd_configs: list[HTTPSDConfig] = field(default_factory=list)
    ionos_sd_configs: list[Any] = field(default_factory=list)
    kubernetes_sd_configs: list[KubernetesSDConfig] = field(default_factory=list)
    kuma_sd_configs: list[Any] = field(default_factory=list)
    lightsail_sd_configs: list[Any] = field(default_factory=list)
    linode_sd_configs: list[Any] = field(default_factory=list)
    marathon_sd_configs: list[Any] = field(default_factory=list)
    nerve_sd_configs: list[Any] = field(default_factory=list)
    nomad_sd_configs: list[Any] = field(default_factory=list)
    openstack_sd_configs: list[Any] = field(default_factory=list)
    ovhcloud_sd_configs: list[Any] = field(default_factory=list)
    puppetdb_sd_configs: list[Any] = field(default_factory=list)
    scaleway_sd_configs: list[Any] = field(default_factory=list)
    serverset_sd_configs: list[Any] = field(default_factory=list)
    static_configs: list[StaticConfig] = field(default_factory=list)
    triton_sd_configs: list[Any] = field(default_factory=list)
    uyuni_sd_configs: list[Any] = field(default_factory=list)
    vultr_sd_configs: list[Any] = field(default_factory=list)

    def check_discovery(self) -> None:
        for key in SD_KEYS:
            for entry in getattr(self, key):
                if entry is None:
                    raise ConfigError(f"empty or null section in {key}")
                if not dataclasses.is_dataclass(entry) and not isinstance(entry, dict):
                    raise ConfigError(f"{key}: each entry must be a mapping")
                if isinstance(entry, dict):
                    check_entry(sd_name(key), entry)  # the opaque ones: Prometheus 2.42's own checks


SD_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SDFields) if f.name.endswith(SD_SUFFIX) or f.name == STATIC_KEY
)


def sd_name(key: str) -> str:
    """`kubernetes_sd_configs` -> `kubernetes`, `static_configs` -> `static` (Prometheus' Config.Name())."""
    return "static" if key == STATIC_KEY else key[: -len(SD_SUFFIX)]


# (key, name) of every mechanism but static, worked out once: sd_entries runs twice per instance start, over
# dozens of mostly empty keys
_SD_NAMED: tuple[tuple[str, str], ...] = tuple((key, sd_name(key)) for key in SD_KEYS if key != STATIC_KEY)


def sd_entries(cfg: SDFields) -> list[tuple[str, Any]]:
    """(name, config) in Prometheus' flattened order; static configs become one ("static", [groups])."""
    out: list[tuple[str, Any]] = []
    for key, name in _SD_NAMED:
        entries = getattr(cfg, key)
        if entries:
            out.extend((name, entry) for entry in entries)
    if cfg.static_configs:
        out.append(("static", list(cfg.static_configs)))
    return out
