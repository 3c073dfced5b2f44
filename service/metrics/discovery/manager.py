"""Discovery for one scrape config: every provider its sd entries name, merged into one view of target
groups keyed by (provider index, source), with a change callback."""

from __future__ import annotations

from collections.abc import Callable

from service.log import get_logger
from service.metrics.config.discovery import sd_entries
from service.metrics.config.scrape import ScrapeConfig
from service.metrics.discovery.base import Provider, TargetGroup
from service.metrics.discovery.dns import DNSProvider
from service.metrics.discovery.file import FileProvider
from service.metrics.discovery.http import HTTPProvider
from service.metrics.discovery.kubernetes.provider import KubernetesProvider
from service.metrics.discovery.static import StaticProvider

_log = get_logger("discovery")


def build_providers(sc: ScrapeConfig, file_poll_interval: float = 1.0, host: str | None = None) -> list[Provider]:
    """`host` is set when the instance runs with host_filter (it narrows Kubernetes pod watches)."""
    providers: list[Provider] = []
    for name, entry in sd_entries(sc):
        if name == "static":
            providers.append(StaticProvider(entry))
        elif name == "file":
            providers.append(FileProvider(entry, poll_interval=file_poll_interval))
        elif name == "http":
            providers.append(HTTPProvider(entry))
        elif name == "dns":
            providers.append(DNSProvider(entry))
        elif name == "kubernetes":
            providers.append(KubernetesProvider(entry, host=host))
        else:
            _log.warning("service discovery mechanism not supported; ignored", job=sc.job_name, mechanism=name)
    return providers


class DiscoveryManager:
    """Runs one scrape config's providers; `groups()` is their merged current view."""

    def __init__(self, sc: ScrapeConfig, on_change: Callable[[], None], *, file_poll_interval: float = 1.0,
                 host: str | None = None) -> None:
        self.providers = build_providers(sc, file_poll_interval, host)
        self.on_change = on_change

    def start(self) -> None:
        for p in self.providers:
            p.start(self.on_change)

    async def stop(self) -> None:
        for p in self.providers:
            await p.stop()

    def groups(self) -> list[TargetGroup]:
        return [g for p in self.providers for g in p.sorted_groups()]
