"""role: ingress — one target per rule host and path, networking.k8s.io/v1 (ingress.go, 2.42)."""

from __future__ import annotations

from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.kubernetes.meta import NAMESPACE, PREFIX, Obj, add_labels_and_annotations, meta

RESOURCE = "ingresses"


def source(namespace: str, name: str) -> str:
    return f"ingress/{namespace}/{name}"


def matches_hostname_pattern(pattern: str, host: str) -> bool:
    """A TLS host matches exactly, or as a `*.` wildcard over one leading label."""
    if pattern == host:
        return True
    pparts, hparts = pattern.split("."), host.split(".")
    if not pparts or pparts[0] != "*" or len(pparts) != len(hparts):
        return False
    return pparts[1:] == hparts[1:]


def build(ing: Obj) -> TargetGroup:
    m = meta(ing)
    name, namespace = m.get("name", ""), m.get("namespace", "")
    group = TargetGroup(source(namespace, name))
    group.labels = {PREFIX + "ingress_name": name, NAMESPACE: namespace}
    spec = ing.get("spec") or {}
    if spec.get("ingressClassName") is not None:
        group.labels[PREFIX + "ingress_class_name"] = spec["ingressClassName"]
    add_labels_and_annotations(group.labels, "ingress", ing)
    tls_hosts = [h for t in spec.get("tls") or [] for h in t.get("hosts") or []]
    for rule in spec.get("rules") or []:
        host = rule.get("host", "")
        http = rule.get("http")
        paths = ["/"] if http is None else [p.get("path") or "/" for p in http.get("paths") or []]
        scheme = "https" if any(matches_hostname_pattern(p, host) for p in tls_hosts) else "http"
        for path in paths:
            group.targets.append({"__address__": host, PREFIX + "ingress_scheme": scheme,
                                  PREFIX + "ingress_host": host, PREFIX + "ingress_path": path})
    return group
