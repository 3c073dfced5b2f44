"""kubernetes_sd_configs, decoded and validated as Prometheus 2.42's `kubernetes.SDConfig.UnmarshalYAML` does.

Without `api_server` and `kubeconfig_file` the in-cluster service account is used (its token and CA under
`/var/run/secrets/kubernetes.io/serviceaccount`); the no-files check allows that, as Grafana Agent does,
because the paths are fixed and not chosen by whoever sends the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from service.config.errors import ConfigError
from service.config.http_client import HTTPClientFields, check_url
from service.metrics.config.kubernetes_selectors import parse_field_selector, parse_label_selector

ROLES = ("node", "pod", "service", "endpoints", "endpointslice", "ingress")
# Which selector roles each discovery role accepts, in Prometheus' order (used in its error text).
ALLOWED_SELECTORS: dict[str, tuple[str, ...]] = {
    "pod": ("pod",),
    "service": ("service",),
    "endpointslice": ("pod", "service", "endpointslice"),
    "endpoints": ("pod", "service", "endpoints"),
    "node": ("node",),
    "ingress": ("ingress",),
}
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ConfigError(f'unknown Kubernetes SD role "{role}"')


@dataclass
class NamespaceDiscovery:
    __yaml_type__ = "kubernetes.plain"

    own_namespace: bool = False
    names: list[str] = field(default_factory=list)


@dataclass
class SelectorConfig:
    __yaml_type__ = "kubernetes.SelectorConfig"

    role: str = ""
    label: str = ""
    field: str = ""

    def check(self) -> None:
        if self.role:
            check_role(self.role)


@dataclass
class AttachMetadataConfig:
    __yaml_type__ = "kubernetes.AttachMetadataConfig"

    node: bool = False


@dataclass
class _KubernetesHead:
    api_server: str = ""
    role: str = ""
    kubeconfig_file: str = ""


@dataclass
class _KubernetesTail:
    # None when not written, so the config shown back leaves them out as Go's `omitempty` does.
    namespaces: NamespaceDiscovery | None = None
    selectors: list[SelectorConfig] = field(default_factory=list)
    attach_metadata: AttachMetadataConfig | None = None


def _custom_http_client(cfg: HTTPClientFields) -> bool:
    """True when any inline HTTP client field differs from prometheus/common's defaults."""
    default = HTTPClientFields()
    return any(getattr(cfg, f.name) != getattr(default, f.name) for f in fields(HTTPClientFields))


@dataclass
class KubernetesSDConfig(_KubernetesTail, HTTPClientFields, _KubernetesHead):
    """Fields in Prometheus' marshalling order: api_server, role, kubeconfig_file, HTTP client, the rest."""

    __yaml_type__ = "kubernetes.plain"

    def check(self) -> None:
        if self.role:
            check_role(self.role)
        if self.api_server:
            check_url(self.api_server)
        if not self.role:
            raise ConfigError("role missing (one of: pod, service, endpoints, endpointslice, node, ingress)")
        self.check_http_client()
        if self.api_server and self.kubeconfig_file:
            raise ConfigError("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
        custom = _custom_http_client(self)
        if self.kubeconfig_file and custom:
            raise ConfigError("cannot use a custom HTTP client configuration together with 'kubeconfig_file'")
        if not self.api_server and custom:
            raise ConfigError("to use custom HTTP client configuration please provide the 'api_server' URL "
                              "explicitly")
        if self.api_server and self.own_namespace:
            raise ConfigError("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously")
        if self.kubeconfig_file and self.own_namespace:
            raise ConfigError("cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously")
        seen: set[str] = set()
        allowed = ALLOWED_SELECTORS[self.role]
        for selector in self.selectors:
            if selector is None:
                continue
            if selector.role in seen:
                raise ConfigError(f"duplicated selector role: {selector.role}")
            seen.add(selector.role)
            if selector.role not in allowed:
                raise ConfigError(f"{self.role} role supports only {', '.join(allowed)} selectors")
            parse_field_selector(selector.field)
            parse_label_selector(selector.label)

    @property
    def own_namespace(self) -> bool:
        return self.namespaces is not None and self.namespaces.own_namespace

    @property
    def namespace_names(self) -> list[str]:
        return list(self.namespaces.names) if self.namespaces is not None else []

    @property
    def attach_node_metadata(self) -> bool:
        return self.attach_metadata is not None and self.attach_metadata.node

    @property
    def in_cluster(self) -> bool:
        return not self.api_server and not self.kubeconfig_file

    def selector_for(self, role: str) -> tuple[str, str]:
        """(label selector, field selector) this config sets for watches of `role`."""
        for selector in self.selectors:
            if selector is not None and selector.role == role:
                return selector.label, selector.field
        return "", ""
