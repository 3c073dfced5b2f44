"""role: pod — one target per container port, and one per container without ports (pod.go, 2.42)."""

from __future__ import annotations

from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.kubernetes.meta import NAMESPACE, PREFIX, Obj, join_host_port, meta, pod_labels

RESOURCE = "pods"


def source(namespace: str, name: str) -> str:
    return f"pod/{namespace}/{name}"


def _container_ids(statuses: list[Obj] | None) -> dict[str, str]:
    return {s.get("name", ""): s.get("containerID", "") for s in statuses or []}


def build(pod: Obj, node_labels: dict[str, str]) -> TargetGroup:
    m = meta(pod)
    group = TargetGroup(source(m.get("namespace", ""), m.get("name", "")))
    status = pod.get("status") or {}
    ip = status.get("podIP", "")
    if not ip:
        return group
    group.labels = pod_labels(pod)
    group.labels[NAMESPACE] = m.get("namespace", "")
    group.labels.update(node_labels)
    spec = pod.get("spec") or {}
    containers = [(c, False) for c in spec.get("containers") or []]
    containers += [(c, True) for c in spec.get("initContainers") or []]
    ids = _container_ids(status.get("containerStatuses"))
    init_ids = _container_ids(status.get("initContainerStatuses"))
    for c, is_init in containers:
        name = c.get("name", "")
        common = {
            PREFIX + "pod_container_name": name,
            PREFIX + "pod_container_id": (init_ids if is_init else ids).get(name, ""),
            PREFIX + "pod_container_image": c.get("image", ""),
            PREFIX + "pod_container_init": "true" if is_init else "false",
        }
        ports = c.get("ports") or []
        if not ports:
            group.targets.append({"__address__": ip, **common})
            continue
        for port in ports:
            number = str(port.get("containerPort", 0))
            group.targets.append({
                "__address__": join_host_port(ip, number), **common,
                PREFIX + "pod_container_port_number": number,
                PREFIX + "pod_container_port_name": port.get("name", ""),
                PREFIX + "pod_container_port_protocol": port.get("protocol", ""),
            })
    return group
