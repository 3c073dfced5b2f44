"""The no-files rule: unless the node sets `dangerous_allow_reading_files`, a config sent over the API must
not make the node read local files (Grafana Agent's validateNofiles, plus the gaps it leaves open:
oauth2 secret files, file_sd_configs and kubeconfig_file).

Run it on the config *after* apply_defaults, so an inherited global remote_write is checked too.
"""

from __future__ import annotations

from typing import Any

from service.config.errors import ConfigError
from service.config.http_client import HTTPClientFields
from service.metrics.config.discovery import FileSDConfig, HTTPSDConfig, sd_entries
from service.metrics.config.instance import InstanceConfig
from service.metrics.config.kubernetes import KubernetesSDConfig

# Discovery types as the agent vets them: the whole HTTP client block, only its TLS files, or nothing.
HTTP_CHECKED = frozenset({"digitalocean", "dockerswarm", "eureka", "hetzner", "kubernetes", "marathon",
                          "scaleway", "http", "linode", "consul"})
TLS_CHECKED = frozenset({"consulagent", "openstack", "triton"})
NOT_CHECKED = frozenset({"static", "azure", "dns", "ec2", "gce", "nerve", "serverset"})
# Extra file fields of discovery types, checked after the HTTP client ones.
EXTRA_FILE_FIELDS = {"marathon": ("auth_token_file",), "kubernetes": ("kubeconfig_file",)}


def _forbidden(name: str) -> ConfigError:
    return ConfigError(f"{name} must be empty unless dangerous_allow_reading_files is set")


def check_reading_files(cfg: InstanceConfig) -> None:
    """Raise ConfigError naming the first field that would make the node read a file, and where it is."""
    for i, rw in enumerate(cfg.remote_write):
        if rw is None:
            continue
        try:
            _check_client(rw)
        except ConfigError as exc:
            raise ConfigError(f"failed to validate remote_write at index {i}: {exc}") from None
    for i, sc in enumerate(cfg.scrape_configs):
        if sc is None:
            continue
        try:
            _check_client(sc)
        except ConfigError as exc:
            raise ConfigError(f"failed to validate scrape_config at index {i}: {exc}") from None
        for j, (name, disc) in enumerate(sd_entries(sc)):
            try:
                _check_discovery(name, disc)
            except ConfigError as exc:
                raise ConfigError(f"failed to validate service discovery at index {j} within "
                                  f"scrape_config at index {i}: {exc}") from None


def _check_client(client: HTTPClientFields) -> None:
    files = client.files_read()
    if files:
        raise _forbidden(files[0][0])


def _check_discovery(name: str, disc: Any) -> None:
    if isinstance(disc, FileSDConfig):
        raise _forbidden("file_sd_configs")
    if isinstance(disc, HTTPSDConfig):
        _check_client(disc)
        return
    if isinstance(disc, KubernetesSDConfig):
        _check_client(disc)  # in-cluster config (no api_server) reads only the fixed service account files
        if disc.kubeconfig_file:
            raise _forbidden("kubeconfig_file")
        return
    if name in NOT_CHECKED:
        return
    if name in HTTP_CHECKED:
        _check_opaque_client(disc)
    elif name in TLS_CHECKED:
        _check_opaque_tls(disc.get("tls_config"))
    else:
        raise ConfigError(f"unknown service discovery {name}; rejecting config for safety. "
                          "set dangerous_allow_reading_files to ignore")
    for extra in EXTRA_FILE_FIELDS.get(name, ()):
        if disc.get(extra):
            raise _forbidden(extra)


def _sub(block: Any, key: str) -> Any:
    return block.get(key) if isinstance(block, dict) else None


def _check_opaque_client(disc: dict[str, Any]) -> None:
    """The same checks as HTTPClientFields.files_read, on an untyped discovery block."""
    if disc.get("bearer_token_file"):
        raise _forbidden("bearer_token_file")
    if _sub(disc.get("basic_auth"), "password_file"):
        raise _forbidden("password_file")
    if _sub(disc.get("authorization"), "credentials_file"):
        raise _forbidden("credentials_file")
    _check_opaque_tls(disc.get("tls_config"))
    oauth2 = disc.get("oauth2")
    if _sub(oauth2, "client_secret_file"):
        raise _forbidden("oauth2.client_secret_file")
    _check_opaque_tls(_sub(oauth2, "tls_config"), prefix="oauth2.tls_config.")


def _check_opaque_tls(tls: Any, prefix: str = "") -> None:
    for key in ("ca_file", "cert_file", "key_file"):
        if _sub(tls, key):
            raise _forbidden(prefix + key)
