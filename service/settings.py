"""The node config file: Grafana Agent static-mode YAML (`agent.yaml`) with the agent's defaults.

Strict like the agent: an unknown key anywhere is an error naming it. Sections the agent knows that we do not
implement yet parse and log a warning instead of failing (see `unimplemented()`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from service.cluster.config import ScrapingServiceConfig
from service.config.durations import GoDuration
from service.config.errors import ConfigError
from service.config.schema import loads, yaml_field
from service.http.auth import HTTPAuthConfig
from service.http.tls import ServerTLSConfig
from service.logs.config import LogsConfig
from service.metrics.config import GlobalConfig, InstanceConfig, apply_defaults
from service.metrics.config.discovery import sd_entries
from service.metrics.config.sdcheck import refusal, unsupported

BUILT_IN = ("agent",)  # the integrations this node serves (`/integrations/...`); any other one is unimplemented

@dataclass
class ServerConfig:
    __yaml_type__ = "server.Config"

    log_level: str = "info"
    log_format: str = "logfmt"
    http_listen_address: str = ""
    http_listen_port: int = 0
    grpc_listen_address: str = ""
    grpc_listen_port: int = 0
    http_tls_config: ServerTLSConfig = field(default_factory=ServerTLSConfig)
    http_auth: HTTPAuthConfig = field(default_factory=HTTPAuthConfig)  # ours
    grpc_tls_config: Any = None
    graceful_shutdown_timeout: GoDuration = GoDuration(30)
    # Limits on the HTTP port (service/http/limits.py); 0 turns one off.
    http_listen_conn_limit: int = 1024
    http_server_read_header_timeout: GoDuration = GoDuration(10)
    http_server_max_header_bytes: int = 1 << 20  # ours

    def check(self) -> None:
        if self.http_listen_conn_limit < 0 or self.http_server_max_header_bytes < 0:
            raise ConfigError("server.http_listen_conn_limit and http_server_max_header_bytes must not be "
                              "negative")
        if 0 < self.http_server_max_header_bytes < 4096:
            raise ConfigError("server.http_server_max_header_bytes must be at least 4096 (or 0 for no limit)")
        if float(self.http_server_read_header_timeout) < 0:
            raise ConfigError("server.http_server_read_header_timeout must not be negative")
        if self.log_level not in ("debug", "info", "warn", "error"):
            raise ConfigError(f'unrecognized log level "{self.log_level}"')
        if self.log_format not in ("logfmt", "json"):
            raise ConfigError(f'unrecognized log format "{self.log_format}"')


@dataclass
class MetricsConfig:
    __yaml_type__ = "metrics.Config"

    global_: GlobalConfig = yaml_field("global", default_factory=GlobalConfig)
    wal_directory: str = "data-agent/"
    wal_cleanup_age: GoDuration = GoDuration(12 * 3600)
    wal_cleanup_period: GoDuration = GoDuration(30 * 60)
    scraping_service: ScrapingServiceConfig = field(default_factory=ScrapingServiceConfig)
    scraping_service_client: Any = None
    configs: list[InstanceConfig] = field(default_factory=list)
    instance_restart_backoff: GoDuration = GoDuration(5)
    instance_mode: str = "shared"
    http_disable_keepalives: bool = False
    http_idle_conn_timeout: GoDuration = GoDuration(5 * 60)
    # Ours: accept configs using a service discovery this node does not run (consul, ec2, ...), e.g. while
    # migrating. They then discover no targets from it; the targets API, a metric and config-check say so.
    accept_unsupported_sd: bool = False
    # Ours: processes that decode and check remote write bodies beside the serving process (0: none, decode
    # in the serving process); unset: the CPU limit the node sees (service/metrics/decode_pool.py).
    ingest_workers: int | None = None

    def check(self) -> None:
        if self.ingest_workers is not None and not 0 <= self.ingest_workers <= 64:
            raise ConfigError(f"metrics.ingest_workers must be between 0 and 64, got {self.ingest_workers}")
        if self.instance_mode not in ("shared", "distinct"):
            raise ConfigError(f"unsupported instance_mode '{self.instance_mode}'. supported values 'shared', "
                              "'distinct'")
        if self.scraping_service.enabled and self.configs:
            raise ConfigError("cannot use configs when scraping_service mode is enabled")
        if (self.configs or self.scraping_service.enabled) and not self.wal_directory:
            raise ConfigError("no wal_directory configured")
        seen: set[str] = set()
        for index, cfg in enumerate(self.configs):
            if cfg is None or not cfg.name:
                raise ConfigError(f"error validating instance at index {index}: missing instance name")
            if cfg.name in seen:
                raise ConfigError("prometheus instance names must be unique. found multiple instances "
                                  f"with name {cfg.name}")
            seen.add(cfg.name)
            try:
                apply_defaults(cfg, self.global_)
            except ConfigError as exc:
                raise ConfigError(f"failed to apply defaults to \"{cfg.name}\": {exc}") from None
            if not self.accept_unsupported_sd:
                for sc in cfg.scrape_configs:
                    for mechanism in unsupported(sd_entries(sc)):
                        raise ConfigError(f'instance "{cfg.name}": {refusal(sc.job_name, mechanism)}')

    def unsupported_sd(self) -> list[str]:
        """`instance/job: mechanism` for every static config's discovery the node does not run."""
        return [f"{cfg.name}/{sc.job_name}: {mechanism}_sd_configs" for cfg in self.configs
                for sc in cfg.scrape_configs for mechanism in unsupported(sd_entries(sc))]


@dataclass
class NodeConfig:
    __yaml_type__ = "config.Config"

    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logs: LogsConfig | None = None
    integrations: dict[str, Any] = field(default_factory=dict)
    traces: Any = None
    # Deprecated names the agent still accepted for `metrics` and `logs`.
    prometheus: Any = None
    loki: Any = None

    def check(self) -> None:
        if self.prometheus is not None:
            raise ConfigError("the `prometheus` block was renamed to `metrics`; rename it in the config file")
        if self.loki is not None:
            raise ConfigError("the `loki` block was renamed to `logs`; rename it in the config file")

    def unimplemented(self) -> list[str]:
        """Sections that parse but are not acted on yet (logged as warnings at start and reload)."""
        out = []
        if self.logs is not None and any(sc.loki_push_api is None and not sc.static_configs
                                         for c in self.logs.configs for sc in c.scrape_configs):
            out.append("logs")  # only push targets and static file targets are served
        out.extend(f"integrations.{name}" for name in sorted(self.integrations) if name not in BUILT_IN)
        if self.traces is not None:
            out.append("traces")
        if self.metrics.scraping_service_client is not None:
            out.append("metrics.scraping_service_client")
        if self.server.grpc_tls_config is not None:
            out.append("server.grpc_tls_config")
        return out


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand_env(text: str) -> str:
    """`${VAR}`, `${VAR:-default}`, `$VAR`; `$$` is a literal `$` (as -config.expand-env does)."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(3)
        value = os.environ.get(name, "")
        if not value and match.group(2) is not None:
            return match.group(2)
        return value

    return _ENV_REF.sub(sub, text)


def parse_node_config(data: str | bytes, *, expand: bool = False) -> NodeConfig:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"invalid UTF-8 at byte {exc.start}") from None
    if expand:
        data = expand_env(data)
    if not data.strip():
        return NodeConfig()
    return loads(NodeConfig, data)
