"""Discovery blocks this node does not run (consul, ec2, gce, azure, ...): validated as Prometheus 2.42's
UnmarshalYAML validates them, and found by name so the config API can refuse them.

The node runs static, file, http, dns and kubernetes discovery (typed elsewhere). The others are kept as
opaque mappings; this module checks their keys (unknown field), required fields and roles with Prometheus'
wording, so a config opted in with `metrics.accept_unsupported_sd` is still a valid Prometheus config.
Field lists are Prometheus v2.42.0's SDConfig structs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from service.config.errors import ConfigError

RUN_BY_NODE = frozenset({"static", "file", "http", "dns", "kubernetes"})

# prometheus/common v0.39 HTTPClientConfig, inlined into most SD configs.
_HTTP = frozenset({"basic_auth", "authorization", "oauth2", "bearer_token", "bearer_token_file", "tls_config",
                   "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header", "follow_redirects",
                   "enable_http2"})


@dataclass(frozen=True)
class _Spec:
    type_name: str
    keys: frozenset[str]
    check: Callable[[dict[str, Any]], None] | None = None


def _need(*names: str, message: str) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        if any(not entry.get(n) for n in names):
            raise ConfigError(message)
    return check


def _role(valid: tuple[str, ...], missing: str, invalid: str) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        role = entry.get("role")
        if not role:
            raise ConfigError(missing)
        if role not in valid:
            raise ConfigError(invalid.format(role=role))
    return check


def _all(*checks: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        for c in checks:
            c(entry)
    return check


def _spec(type_name: str, keys: str, http: bool = True,
          check: Callable[[dict[str, Any]], None] | None = None) -> _Spec:
    return _Spec(type_name, frozenset(keys.split()) | (_HTTP if http else frozenset()), check)


def _consul(entry: dict[str, Any]) -> None:
    if "server" in entry and not str(entry.get("server") or "").strip():
        raise ConfigError("consul SD configuration requires a server address")


def _azure(entry: dict[str, Any]) -> None:
    method = entry.get("authentication_method", "OAuth")
    if method not in ("OAuth", "ManagedIdentity"):
        raise ConfigError(f'unknown authentication_type "{method}". Supported types are "OAuth" or '
                          '"ManagedIdentity"')
    if not entry.get("subscription_id"):
        raise ConfigError("azure SD configuration requires a subscription_id")
    if method == "OAuth":
        for name in ("tenant_id", "client_id", "client_secret"):
            if not entry.get(name):
                raise ConfigError(f"azure SD configuration requires a {name}")


def _zookeeper(kind: str) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        if not entry.get("servers"):
            raise ConfigError(f"{kind} SD config must contain at least one Zookeeper server")
        paths = entry.get("paths") or []
        if not paths:
            raise ConfigError(f"{kind} SD config must contain at least one path")
        for path in paths:
            if not str(path).startswith("/"):
                raise ConfigError(f"{kind} SD config paths must begin with '/': {path}")
    return check


_AWS = "endpoint region access_key secret_key profile role_arn refresh_interval port"
SPECS: dict[str, _Spec] = {
    "azure": _spec("azure.SDConfig", "environment port subscription_id tenant_id client_id client_secret "
                   "refresh_interval authentication_method resource_group", check=_azure),
    "consul": _spec("consul.SDConfig", "server token datacenter namespace partition tag_separator scheme username "
                    "password allow_stale refresh_interval services tags node_meta", check=_consul),
    "digitalocean": _spec("digitalocean.SDConfig", "refresh_interval port"),
    "docker": _spec("moby.DockerSDConfig", "host port filters host_networking_host refresh_interval",
                    check=_need("host", message="host missing")),
    "dockerswarm": _spec("moby.DockerSwarmSDConfig", "host role port filters refresh_interval", check=_all(
        _need("host", message="host missing"),
        _role(("tasks", "services", "nodes"), "role missing (one of: tasks, services, nodes)",
              "invalid role {role}, expected tasks, services, or nodes"))),
    "ec2": _spec("aws.EC2SDConfig", _AWS + " filters",
                 check=_need("region", message="EC2 SD configuration requires a region")),
    "eureka": _spec("eureka.SDConfig", "server refresh_interval",
                    check=_need("server", message="eureka_sd: empty or null eureka server")),
    "gce": _spec("gce.SDConfig", "project zone filter refresh_interval port tag_separator", http=False,
                 check=_all(_need("project", message="GCE SD configuration requires a project"),
                            _need("zone", message="GCE SD configuration requires a zone"))),
    "hetzner": _spec("hetzner.SDConfig", "refresh_interval port role", check=_role(
        ("robot", "hcloud"), "role missing (one of: robot, hcloud)", 'unknown role "{role}"')),
    "ionos": _spec("ionos.SDConfig", "datacenter_id refresh_interval port",
                   check=_need("datacenter_id", message="datacenter id can't be empty")),
    "kuma": _spec("xds.KumaSDConfig", "refresh_interval fetch_timeout server",
                  check=_need("server", message="kuma SD server must not be empty: ")),
    "lightsail": _spec("aws.LightsailSDConfig", _AWS,
                       check=_need("region", message="Lightsail SD configuration requires a region")),
    "linode": _spec("linode.SDConfig", "refresh_interval port tag_separator"),
    "marathon": _spec("marathon.SDConfig", "servers refresh_interval auth_token auth_token_file", check=_need(
        "servers", message="marathon_sd: must contain at least one Marathon server")),
    "nerve": _spec("zookeeper.NerveSDConfig", "servers paths timeout", http=False, check=_zookeeper("nerve")),
    "nomad": _spec("nomad.SDConfig", "allow_stale namespace refresh_interval region server tag_separator"),
    "openstack": _spec("openstack.SDConfig", "identity_endpoint username userid password project_name project_id "
                       "domain_name domain_id application_credential_name application_credential_id "
                       "application_credential_secret role region refresh_interval port all_tenants tls_config "
                       "availability", http=False, check=_all(
                           _role(("instance", "hypervisor"), "role missing (one of: instance, hypervisor)",
                                 'unknown OpenStack SD role "{role}"'),
                           _need("region", message="openstack SD configuration requires a region"))),
    "ovhcloud": _spec("ovhcloud.SDConfig", "endpoint application_key application_secret consumer_key "
                      "refresh_interval service", http=False, check=_all(
                          _need("endpoint", message="endpoint can not be empty"),
                          _need("application_key", message="application key can not be empty"),
                          _need("application_secret", message="application secret can not be empty"),
                          _need("consumer_key", message="consumer key can not be empty"))),
    "puppetdb": _spec("puppetdb.SDConfig", "refresh_interval url query include_parameters port", check=_all(
        _need("url", message="URL is missing"), _need("query", message="query missing"))),
    "scaleway": _spec("scaleway.SDConfig", "project_id api_url zone access_key secret_key secret_key_file "
                      "name_filter tags_filter refresh_interval port role", check=_all(
                          _role(("instance", "baremetal"), "role missing (one of: instance, baremetal)",
                                'unknown role "{role}"'),
                          _need("project_id", message="project_id is mandatory"),
                          _need("access_key", message="access_key is mandatory"))),
    "serverset": _spec("zookeeper.ServersetSDConfig", "servers paths timeout", http=False,
                       check=_zookeeper("serverset")),
    "triton": _spec("triton.SDConfig", "account role dns_suffix endpoint groups port refresh_interval tls_config "
                    "version", http=False, check=_all(
                        _role(("container", "cn"), "triton SD configuration requires role to be 'container' or "
                              "'cn'", "triton SD configuration requires role to be 'container' or 'cn'"),
                        _need("account", message="triton SD configuration requires an account"),
                        _need("dns_suffix", message="triton SD configuration requires a dns_suffix"),
                        _need("endpoint", message="triton SD configuration requires an endpoint"))),
    "uyuni": _spec("uyuni.SDConfig", "server username password entitlement separator refresh_interval",
                   check=_all(_need("server", message="Uyuni SD configuration requires server host"),
                              _need("username", message="Uyuni SD configuration requires a username"),
                              _need("password", message="Uyuni SD configuration requires a password"))),
    "vultr": _spec("vultr.SDConfig", "refresh_interval port"),
}


def check_entry(mechanism: str, entry: Any) -> None:
    """Validate one opaque discovery entry of `mechanism` (ConfigError with Prometheus' wording)."""
    spec = SPECS.get(mechanism)
    if spec is None or not isinstance(entry, dict):
        return
    for key in entry:
        if key not in spec.keys:
            raise ConfigError(f"yaml: unmarshal errors:\n  field {key} not found in type {spec.type_name}")
    if spec.check is not None:
        spec.check(entry)


def unsupported(sd_pairs: Iterator[tuple[str, Any]] | list[tuple[str, Any]]) -> list[str]:
    """The mechanisms among (name, entry) pairs that this node does not run, each once, in order."""
    out: list[str] = []
    for name, _ in sd_pairs:
        if name not in RUN_BY_NODE and name not in out:
            out.append(name)
    return out


def refusal(job: str, mechanism: str) -> str:
    return (f'scrape config with job name "{job}" uses {mechanism}_sd_configs: this node does not run {mechanism} '
            "service discovery, so it would discover no targets (set metrics.accept_unsupported_sd: true in the "
            "node file to accept such configs anyway, e.g. during a migration)")
