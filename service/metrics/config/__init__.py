"""Metrics instance configs (Grafana Agent's `metrics_instance_config`) and the `metrics.global` block.

Modules: discovery (service discovery blocks), scrape (scrape_config), remote_write, instance (the instance
config, parsing and apply_defaults), validate (the no-files rule), render (the YAML shown back, secrets
masked). The inline HTTP client settings are shared with logs clients: `service/config/http_client.py`.
"""

from service.config.http_client import Authorization, BasicAuth, HTTPClientFields, OAuth2, TLSConfig
from service.metrics.config.discovery import (
    DNSSDConfig,
    FileSDConfig,
    HTTPSDConfig,
    StaticConfig,
    sd_entries,
)
from service.metrics.config.instance import (
    GlobalConfig,
    InstanceConfig,
    apply_defaults,
    job_names,
    parse_instance,
    remote_write_hash,
)
from service.metrics.config.remote_write import MetadataConfig, QueueConfig, RemoteWriteConfig
from service.metrics.config.render import render_instance
from service.metrics.config.scrape import ByteSize, ScrapeConfig
from service.metrics.config.validate import check_reading_files

__all__ = [
    "Authorization", "BasicAuth", "ByteSize", "DNSSDConfig", "FileSDConfig", "GlobalConfig",
    "HTTPClientFields", "HTTPSDConfig", "InstanceConfig", "MetadataConfig", "OAuth2", "QueueConfig",
    "RemoteWriteConfig", "ScrapeConfig", "StaticConfig", "TLSConfig", "apply_defaults",
    "check_reading_files", "job_names", "parse_instance", "remote_write_hash", "render_instance",
    "sd_entries",
]
