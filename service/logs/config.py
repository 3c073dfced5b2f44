"""The ``logs:`` block of the node file, in Grafana Agent static mode / Promtail syntax.

Promtail discovery blocks and ``pipeline_stages`` are kept opaque here (a separate module interprets them);
everything the push receiver and the Loki client use is typed and validated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from service.config.durations import GoDuration
from service.config.errors import ConfigError
from service.config.http_client import HTTPClientFields, check_url
from service.config.schema import yaml_field
from service.config.secrets import redact_url
from service.http.tls import ServerTLSConfig
from service.logs.search.config import SearchConfig
from service.relabel import RelabelConfig


@dataclass
class BackoffConfig:
    __yaml_type__ = "backoff.Config"

    min_period: GoDuration = GoDuration(0.5)
    max_period: GoDuration = GoDuration(300)
    max_retries: int = 10


@dataclass
class ClientConfig(HTTPClientFields):
    """One Loki endpoint (Promtail ``client.Config``)."""

    __yaml_type__ = "client.Config"

    url: str = ""
    name: str = ""
    tenant_id: str = ""
    batchwait: GoDuration = GoDuration(1)
    batchsize: int = 1 << 20
    timeout: GoDuration = GoDuration(10)
    backoff_config: BackoffConfig = field(default_factory=BackoffConfig)
    external_labels: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    drain_timeout: GoDuration = GoDuration(15)
    stream_lag_labels: Any = None

    def check(self) -> None:
        if not self.url:
            raise ConfigError("client needs target URL")
        check_url(self.url)
        self.check_http_client()
        if self.batchsize <= 0:
            raise ConfigError("batchsize must be positive")

    def display_name(self) -> str:
        """Name used for metrics and logs (the URL's password redacted)."""
        return self.name or redact_url(self.url)


@dataclass
class FileWatchConfig:
    __yaml_type__ = "file.WatchConfig"

    min_poll_frequency: GoDuration = GoDuration(0.25)
    max_poll_frequency: GoDuration = GoDuration(0.25)


@dataclass
class LogsGlobalConfig:
    __yaml_type__ = "logs.GlobalConfig"

    clients: list[ClientConfig] = field(default_factory=list)
    file_watch_config: FileWatchConfig = field(default_factory=FileWatchConfig)


@dataclass
class PositionsConfig:
    __yaml_type__ = "positions.Config"

    filename: str = ""
    sync_period: GoDuration = GoDuration(10)
    ignore_invalid_yaml: bool = False


@dataclass
class PushServerConfig:
    """The ``server`` block of ``loki_push_api`` (the weaveworks/dskit server fields Promtail exposes)."""

    __yaml_type__ = "server.Config"

    http_listen_network: str = "tcp"
    http_listen_address: str = ""
    http_listen_port: int = 80
    http_listen_conn_limit: int = 0
    grpc_listen_network: str = "tcp"
    grpc_listen_address: str = ""
    grpc_listen_port: int = 0  # logproto.Pusher/Push over gRPC when set (0 = off; Promtail's 9095 was never served)
    grpc_listen_conn_limit: int = 0
    http_server_read_timeout: GoDuration = GoDuration(30)
    http_server_write_timeout: GoDuration = GoDuration(30)
    http_server_idle_timeout: GoDuration = GoDuration(120)
    grpc_server_max_recv_msg_size: int = 4 << 20
    grpc_server_max_send_msg_size: int = 4 << 20
    grpc_server_max_concurrent_streams: int = 100
    graceful_shutdown_timeout: GoDuration = GoDuration(30)
    register_instrumentation: bool = True
    log_level: str = "info"
    log_format: str = "logfmt"
    http_path_prefix: str = ""
    http_tls_config: ServerTLSConfig | None = None  # serves HTTPS, as the node's own server.http_tls_config
    grpc_tls_config: ServerTLSConfig | None = None  # the gRPC port's TLS; unset = as http_tls_config


@dataclass
class PushTargetConfig:
    """``loki_push_api``: a Loki push server of its own (Promtail ``PushTargetConfig``)."""

    __yaml_type__ = "scrapeconfig.PushTargetConfig"

    server: PushServerConfig = field(default_factory=PushServerConfig)
    labels: dict[str, str] = field(default_factory=dict)
    use_incoming_timestamp: bool = False
    relabel_configs: list[RelabelConfig] = field(default_factory=list)


@dataclass
class ScrapeConfig:
    """A Promtail scrape config; discovery/target blocks other than ``loki_push_api`` stay opaque."""

    __yaml_type__ = "scrapeconfig.Config"

    job_name: str = ""
    pipeline_stages: list[Any] = field(default_factory=list)
    encoding: str = ""
    decompression: Any = None
    relabel_configs: list[RelabelConfig] = field(default_factory=list)
    loki_push_api: PushTargetConfig | None = None
    static_configs: list[Any] = field(default_factory=list)
    file_sd_configs: list[Any] = field(default_factory=list)
    kubernetes_sd_configs: list[Any] = field(default_factory=list)
    consul_sd_configs: list[Any] = field(default_factory=list)
    consulagent_sd_configs: list[Any] = field(default_factory=list)
    docker_sd_configs: list[Any] = field(default_factory=list)
    dockerswarm_sd_configs: list[Any] = field(default_factory=list)
    journal: Any = None
    syslog: Any = None
    gcplog: Any = None
    windows_events: Any = None
    kafka: Any = None
    gelf: Any = None
    cloudflare: Any = None
    heroku_drain: Any = None
    azure_eventhubs: Any = None

    def check(self) -> None:
        if not self.job_name:
            raise ConfigError("job_name is required for a scrape config")


@dataclass
class TargetConfig:
    __yaml_type__ = "file.Config"

    sync_period: GoDuration = GoDuration(10)
    stdin: bool = False


@dataclass
class LogsInstanceConfig:
    __yaml_type__ = "logs.InstanceConfig"

    name: str = ""
    clients: list[ClientConfig] = field(default_factory=list)
    positions: PositionsConfig = field(default_factory=PositionsConfig)
    scrape_configs: list[ScrapeConfig] = field(default_factory=list)
    target_config: TargetConfig = field(default_factory=TargetConfig)
    limits_config: Any = None
    search: SearchConfig = field(default_factory=SearchConfig)  # ours: the local searchable store

    def push_configs(self) -> list[ScrapeConfig]:
        return [sc for sc in self.scrape_configs if sc.loki_push_api is not None]


@dataclass
class LogsConfig:
    __yaml_type__ = "logs.Config"

    positions_directory: str = ""
    global_: LogsGlobalConfig = yaml_field("global", default_factory=LogsGlobalConfig)
    configs: list[LogsInstanceConfig] = field(default_factory=list)

    def check(self) -> None:
        """Grafana Agent's ``logs.Config.ApplyDefaults`` checks, same order and words."""
        names: set[str] = set()
        paths: dict[str, str] = {}
        for index, cfg in enumerate(self.configs):
            if cfg is None or not cfg.name:
                raise ConfigError(f"Loki config index {index} must have a name")
            if cfg.name in names:
                raise ConfigError(f"found two Loki configs with name {cfg.name}")
            names.add(cfg.name)
            if not cfg.positions.filename:
                if not self.positions_directory:
                    raise ConfigError(f"cannot generate Loki positions file path for {cfg.name} because "
                                      "positions_directory is not configured")
                cfg.positions.filename = os.path.join(self.positions_directory, f"{cfg.name}.yml")
            other = paths.get(cfg.positions.filename)
            if other is not None:
                raise ConfigError(f"Loki configs {other} and {cfg.name} must have different positions file paths")
            paths[cfg.positions.filename] = cfg.name
            if not cfg.clients:
                cfg.clients = list(self.global_.clients)
            jobs: set[str] = set()
            for sc in cfg.scrape_configs:
                if sc.job_name in jobs:
                    raise ConfigError(f"found multiple scrape configs with job name {sc.job_name!r}")
                jobs.add(sc.job_name)
