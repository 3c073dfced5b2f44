"""Prometheus' remote_write block, with Grafana Agent static mode's defaults.

Queue and metadata defaults are current Prometheus' (capacity 10000, max_shards 50, 2000 per send); the
agent turns `send_exemplars` and `queue_config.retry_on_http_429` on by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.config.http_client import HTTPClientFields, check_url
from service.relabel import RelabelConfig

# Lower-case names Prometheus refuses in `headers` (it sets them itself). Authorization has its own message.
RESERVED_HEADERS = frozenset({
    "host", "content-encoding", "content-length", "content-type", "user-agent", "connection",
    "keep-alive", "proxy-authenticate", "proxy-authorization", "www-authenticate", "accept-encoding",
    "x-prometheus-remote-write-version", "x-prometheus-remote-read-version",
    "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
})
_30MS, _5S, _30S, _1M = Duration(0.03), Duration(5), Duration(30), Duration(60)


@dataclass
class QueueConfig:
    __yaml_type__ = "config.QueueConfig"

    capacity: int = 10000
    max_shards: int = 50
    min_shards: int = 1
    max_samples_per_send: int = 2000
    batch_send_deadline: Duration = _5S
    min_backoff: Duration = _30MS
    max_backoff: Duration = _5S
    retry_on_http_429: bool = True
    sample_age_limit: Duration | None = None  # Prometheus 2.48; accepted, ignored (docs/configuration.md)


@dataclass
class MetadataConfig:
    __yaml_type__ = "config.MetadataConfig"

    send: bool = True
    send_interval: Duration = _1M
    max_samples_per_send: int = 2000


@dataclass
class _RemoteWriteHead:
    url: str = ""
    remote_timeout: Duration = _30S
    headers: dict[str, str] = field(default_factory=dict)
    write_relabel_configs: list[RelabelConfig] = field(default_factory=list)
    name: str = ""
    send_exemplars: bool = True
    send_native_histograms: bool = False
    round_robin_dns: bool = False  # Prometheus 3; accepted, ignored
    protobuf_message: str = ""  # Prometheus 2.54: only prometheus.WriteRequest (remote write 1.0) is sent


@dataclass
class _RemoteWriteTail:
    queue_config: QueueConfig = field(default_factory=QueueConfig)
    metadata_config: MetadataConfig = field(default_factory=MetadataConfig)
    sigv4: Any | None = None
    azuread: Any | None = None
    google_iam: Any | None = None


@dataclass
class RemoteWriteConfig(_RemoteWriteTail, HTTPClientFields, _RemoteWriteHead):
    """Fields in Prometheus' marshalling order: head, inline HTTP client, queue, metadata, sigv4."""

    __yaml_type__ = "config.plain"

    def check(self) -> None:
        if not self.url:
            raise ConfigError("url for remote_write is empty")
        check_url(self.url)
        if any(rule is None for rule in self.write_relabel_configs):
            raise ConfigError("empty or null relabeling rule in remote write config")
        for header in self.headers:
            lower = header.lower()
            if lower == "authorization":
                raise ConfigError("authorization header must be changed via the basic_auth, authorization, "
                                  "oauth2, sigv4, or azuread parameter")
            if lower in RESERVED_HEADERS:
                raise ConfigError(f"{header} is a reserved header. It must not be changed")
        self.check_http_client()
        auth_enabled = (self.basic_auth is not None or self.authorization is not None
                        or self.oauth2 is not None)
        if auth_enabled and self.sigv4 is not None:
            raise ConfigError("at most one of basic_auth, authorization, oauth2, & sigv4 must be configured")
        if auth_enabled and self.azuread is not None:
            raise ConfigError("at most one of basic_auth, authorization, oauth2, & azuread must be "
                              "configured")
        if self.sigv4 is not None and self.azuread is not None:
            raise ConfigError("at most one of basic_auth, authorization, oauth2, sigv4, & azuread must be "
                              "configured")
        if self.google_iam is not None and (auth_enabled or self.sigv4 is not None or self.azuread is not None):
            raise ConfigError("at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam "
                              "must be configured")
        if self.protobuf_message == "io.prometheus.write.v2.Request":
            raise ConfigError("protobuf_message io.prometheus.write.v2.Request (remote write 2.0) is not "
                              "supported by this node; use prometheus.WriteRequest")
        if self.protobuf_message not in ("", "prometheus.WriteRequest"):
            raise ConfigError(f"unknown remote write protobuf message {self.protobuf_message}, supported: "
                              "prometheus.WriteRequest, io.prometheus.write.v2.Request")
        for block in ("sigv4", "azuread", "google_iam"):
            value = getattr(self, block)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{block} must be a mapping")
