"""role: endpoints — one target per endpoint address and port, enriched with the backing pod and service,
plus one target per pod container port no endpoint port covers (endpoints.go, 2.42)."""

from __future__ import annotations

from service.metrics.discovery.base import TargetGroup
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

RESOURCE = "endpoints"


def source(namespace: str, name: str) -> str:
    return f"endpoints/{namespace}/{name}"


def resolve_pod(ref: Obj | None, pods: dict[str, Obj]) -> Obj | None:
    if not ref or ref.get("kind") != "Pod":
        return None
    return pods.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")


def extra_port_targets(seen: dict[str, tuple[Obj, set[int]]]) -> list[dict[str, str]]:
    """Targets for the container ports of each seen pod that no endpoint port named."""
    out = []
    for pod, used in seen.values():
        ip = (pod.get("status") or {}).get("podIP", "")
        for c in (pod.get("spec") or {}).get("containers") or []:
            for cport in c.get("ports") or []:
                number = cport.get("containerPort", 0)
                if number in used:
                    continue
                out.append({
                    "__address__": join_host_port(ip, number),
                    PREFIX + "pod_container_name": c.get("name", ""),
                    PREFIX + "pod_container_image": c.get("image", ""),
                    PREFIX + "pod_container_port_name": cport.get("name", ""),
                    PREFIX + "pod_container_port_number": str(number),
                    PREFIX + "pod_container_port_protocol": cport.get("protocol", ""),
                    **pod_labels(pod),
                })
    return out


def match_container_port(target: dict[str, str], pod: Obj, port: int, protocol: str | None) -> None:
    """Label the target with the first port of each container that equals the endpoint port; the protocol
    is the endpoint port's (endpoints) or, when None, the container port's (endpointslice)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cport in c.get("ports") or []:
            if cport.get("containerPort") == port:
                target[PREFIX + "pod_container_name"] = c.get("name", "")
                target[PREFIX + "pod_container_image"] = c.get("image", "")
                target[PREFIX + "pod_container_port_name"] = cport.get("name", "")
                target[PREFIX + "pod_container_port_number"] = str(port)
                target[PREFIX + "pod_container_port_protocol"] = protocol if protocol is not None else \
                    cport.get("protocol", "")
                break


def build(eps: Obj, services: dict[str, Obj], pods: dict[str, Obj], nodes: dict[str, Obj] | None) -> TargetGroup:
    m = meta(eps)
    name, namespace = m.get("name", ""), m.get("namespace", "")
    group = TargetGroup(source(namespace, name))
    group.labels = {NAMESPACE: namespace, PREFIX + "endpoints_name": name}
    svc = services.get(f"{namespace}/{name}")
    if svc is not None:
        group.labels.update(service_labels(svc))
    for k, v in (m.get("labels") or {}).items():
        group.labels[PREFIX + "endpoints_label_" + sanitize(k)] = str(v)
        group.labels[PREFIX + "endpoints_labelpresent_" + sanitize(k)] = "true"
    seen: dict[str, tuple[Obj, set[int]]] = {}

    def add(addr: Obj, port: Obj, ready: str) -> None:
        number = port.get("port", 0)
        target = {
            "__address__": join_host_port(addr.get("ip", ""), number),
            PREFIX + "endpoint_port_name": port.get("name", ""),
            PREFIX + "endpoint_port_protocol": port.get("protocol", ""),
            PREFIX + "endpoint_ready": ready,
        }
        ref = addr.get("targetRef")
        if ref is not None:
            target[PREFIX + "endpoint_address_target_kind"] = ref.get("kind", "")
            target[PREFIX + "endpoint_address_target_name"] = ref.get("name", "")
        node_name = addr.get("nodeName")
        if node_name is not None:
            target[PREFIX + "endpoint_node_name"] = node_name
        if addr.get("hostname"):
            target[PREFIX + "endpoint_hostname"] = addr["hostname"]
        if nodes is not None:
            target.update(node_metadata_labels(nodes.get(node_name or ""), node_name))
        pod = resolve_pod(ref, pods)
        if pod is not None:
            pm = meta(pod)
            entry = seen.setdefault(f"{pm.get('namespace', '')}/{pm.get('name', '')}", (pod, set()))
            target.update(pod_labels(pod))
            match_container_port(target, pod, number, port.get("protocol", ""))
            entry[1].add(number)
        group.targets.append(target)

    for subset in eps.get("subsets") or []:
        for port in subset.get("ports") or []:
            for addr in subset.get("addresses") or []:
                add(addr, port, "true")
            for addr in subset.get("notReadyAddresses") or []:
                add(addr, port, "false")
    group.targets.extend(extra_port_targets(seen))
    return group
