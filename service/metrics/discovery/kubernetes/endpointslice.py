"""role: endpointslice (discovery.k8s.io/v1) — one target per endpoint address and port, with the
endpoint's conditions (ready, serving, terminating), the port's app protocol, the backing pod and service,
plus one target per uncovered pod container port (endpointslice.go, 2.42)."""

from __future__ import annotations

from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.kubernetes.endpoints import extra_port_targets, match_container_port, resolve_pod
from service.metrics.discovery.kubernetes.meta import (
    NAMESPACE,
    PREFIX,
    Obj,
    join_host_port,
    meta,
    node_metadata_labels,
    pod_labels,
    sanitize,
    service_labels,
)

RESOURCE = "endpointslices"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def source(namespace: str, name: str) -> str:
    return f"endpointslice/{namespace}/{name}"


def service_name(eps: Obj) -> str | None:
    return (meta(eps).get("labels") or {}).get(SERVICE_NAME_LABEL)


def _bool(value: object) -> str:
    return "true" if value else "false"


def build(eps: Obj, services: dict[str, Obj], pods: dict[str, Obj], nodes: dict[str, Obj] | None) -> TargetGroup:
    m = meta(eps)
    name, namespace = m.get("name", ""), m.get("namespace", "")
    group = TargetGroup(source(namespace, name))
    group.labels = {NAMESPACE: namespace, PREFIX + "endpointslice_name": name,
                    PREFIX + "endpointslice_address_type": eps.get("addressType", "")}
    svc_name = service_name(eps)
    if svc_name is not None and f"{namespace}/{svc_name}" in services:
        group.labels.update(service_labels(services[f"{namespace}/{svc_name}"]))
    seen: dict[str, tuple[Obj, set[int]]] = {}

    def add(addr: str, ep: Obj, port: Obj) -> None:
        number = port.get("port")
        target = {"__address__": addr if number is None else join_host_port(addr, number)}
        if port.get("name") is not None:
            target[PREFIX + "endpointslice_port_name"] = port["name"]
        target[PREFIX + "endpointslice_port_protocol"] = port.get("protocol", "")
        if number is not None:
            target[PREFIX + "endpointslice_port"] = str(number)
        if port.get("appProtocol") is not None:
            target[PREFIX + "endpointslice_port_app_protocol"] = port["appProtocol"]
        conditions = ep.get("conditions") or {}
        for cond in ("ready", "serving", "terminating"):
            if conditions.get(cond) is not None:
                target[PREFIX + "endpointslice_endpoint_conditions_" + cond] = _bool(conditions[cond])
        if ep.get("hostname") is not None:
            target[PREFIX + "endpointslice_endpoint_hostname"] = ep["hostname"]
        ref = ep.get("targetRef")
        if ref is not None:
            target[PREFIX + "endpointslice_address_target_kind"] = ref.get("kind", "")
            target[PREFIX + "endpointslice_address_target_name"] = ref.get("name", "")
        for k, v in (ep.get("deprecatedTopology") or {}).items():
            target[PREFIX + "endpointslice_endpoint_topology_" + sanitize(k)] = str(v)
            target[PREFIX + "endpointslice_endpoint_topology_present_" + sanitize(k)] = "true"
        if nodes is not None:
            node_name = ep.get("nodeName")
            target.update(node_metadata_labels(nodes.get(node_name or ""), node_name))
        pod = resolve_pod(ref, pods)
        if pod is not None:
            pm = meta(pod)
            entry = seen.setdefault(f"{pm.get('namespace', '')}/{pm.get('name', '')}", (pod, set()))
            target.update(pod_labels(pod))
            if number is not None:
                match_container_port(target, pod, number, None)
                entry[1].add(number)
        group.targets.append(target)

    for ep in eps.get("endpoints") or []:
        for port in eps.get("ports") or []:
            for addr in ep.get("addresses") or []:
                add(addr, ep, port)
    group.targets.extend(extra_port_targets(seen))
    return group
