"""role: service — one target per service port, addressed by the service's DNS name (service.go, 2.42)."""

from __future__ import annotations

from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.kubernetes.meta import PREFIX, Obj, join_host_port, meta, service_labels

RESOURCE = "services"


def source(namespace: str, name: str) -> str:
    return f"svc/{namespace}/{name}"


def build(svc: Obj) -> TargetGroup:
    m = meta(svc)
    name, namespace = m.get("name", ""), m.get("namespace", "")
    group = TargetGroup(source(namespace, name), labels=service_labels(svc))
    spec = svc.get("spec") or {}
    kind = spec.get("type", "")
    for port in spec.get("ports") or []:
        number = str(port.get("port", 0))
        target = {
            "__address__": join_host_port(f"{name}.{namespace}.svc", number),
            PREFIX + "service_port_name": port.get("name", ""),
            PREFIX + "service_port_number": number,
            PREFIX + "service_port_protocol": port.get("protocol", ""),
            PREFIX + "service_type": kind,
        }
        if kind == "ExternalName":
            target[PREFIX + "service_external_name"] = spec.get("externalName", "")
        else:
            target[PREFIX + "service_cluster_ip"] = spec.get("clusterIP", "")
        if kind == "LoadBalancer":
            target[PREFIX + "service_loadbalancer_ip"] = spec.get("loadBalancerIP", "")
        group.targets.append(target)
    return group
