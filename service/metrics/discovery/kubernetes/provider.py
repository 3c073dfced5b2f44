"""kubernetes_sd_configs for one scrape config: a subscriber of the shared RoleView its block describes.

The provider holds no objects and builds no groups: `groups` is the view's own dict, shared with every other
config that discovers the same thing. host_filter narrows pod discovery to this host with the field
selector `spec.nodeName=<host>` (replacing the block's selectors, as Grafana Agent's PatchSD does), so a
node watches only its own pods.
"""

from __future__ import annotations

from collections.abc import Callable

from service.config.errors import ConfigError
from service.metrics.config.kubernetes import KubernetesSDConfig
from service.metrics.config.kubernetes_selectors import (
    field_selector_text,
    label_selector_text,
    parse_field_selector,
    parse_label_selector,
)
from service.metrics.discovery.base import Provider, TargetGroup
from service.metrics.discovery.kubernetes.client import ClusterAccess, access_for, own_namespace
from service.metrics.discovery.kubernetes.registry import registry
from service.metrics.discovery.kubernetes.view import RoleView, ViewKey


def namespaces_of(cfg: KubernetesSDConfig) -> tuple[str, ...]:
    """Prometheus' getNamespaces: the names, plus the pod's own namespace when asked; () means all."""
    names = cfg.namespace_names
    if cfg.own_namespace and cfg.in_cluster:
        names.append(own_namespace())
    return tuple(sorted(set(names))) or ("",)


def view_key(cfg: KubernetesSDConfig, access: ClusterAccess, host: str | None = None) -> ViewKey:
    selectors = []
    for s in cfg.selectors:
        if s is not None:
            selectors.append((s.role, label_selector_text(parse_label_selector(s.label)),
                              field_selector_text(parse_field_selector(s.field))))
    if host and cfg.role == "pod":
        selectors = [("pod", "", field_selector_text(parse_field_selector(f"spec.nodeName={host}")))]
    return ViewKey(access.key, cfg.role, namespaces_of(cfg), tuple(sorted(selectors)), cfg.attach_node_metadata)


class KubernetesProvider(Provider):
    kind = "kubernetes"

    def __init__(self, config: KubernetesSDConfig, host: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.host = host
        self.view: RoleView | None = None
        self.last_error = ""

    def start(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        try:
            access = access_for(self.config)
            key = view_key(self.config, access, self.host)
        except (OSError, ValueError, KeyError, ConfigError) as exc:
            self.last_error = str(exc) or type(exc).__name__
            self.log.error("cannot set up Kubernetes discovery", role=self.config.role, err=self.last_error)
            return
        self.view = registry().acquire_view(key, access)
        self.view.subscribers.append(notify)
        self.groups = self.view.groups
        if self.groups:
            notify()

    def sorted_groups(self) -> list[TargetGroup]:
        return self.view.sorted_groups() if self.view is not None else []

    def groups_with_label(self, name: str, value: str) -> list[TargetGroup]:
        return self.view.groups_with_label(name, value) if self.view is not None else []

    async def stop(self) -> None:
        view, self.view = self.view, None
        if view is None:
            return
        if self._notify in view.subscribers:
            view.subscribers.remove(self._notify)
        self.groups = {}
        await registry().release_view(view)
