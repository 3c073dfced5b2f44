"""role: node — one target per node at its kubelet port (node.go, 2.42)."""

from __future__ import annotations

from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.kubernetes.meta import (
    PREFIX,
    Obj,
    add_labels_and_annotations,
    join_host_port,
    meta,
    sanitize,
)

RESOURCE = "nodes"
_ADDRESS_ORDER = ("InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname")


def source(name: str) -> str:
    return f"node/{name}"


def build(node: Obj) -> TargetGroup | None:
    """The node's group, or None when it has no usable address (Prometheus then sends nothing)."""
    m = meta(node)
    name = m.get("name", "")
    group = TargetGroup(source(name))
    provider_id = (node.get("spec") or {}).get("providerID", "")
    group.labels = {PREFIX + "node_name": name, PREFIX + "node_provider_id": provider_id}
    add_labels_and_annotations(group.labels, "node", node)
    status = node.get("status") or {}
    by_type: dict[str, list[str]] = {}
    for a in status.get("addresses") or []:
        by_type.setdefault(a.get("type", ""), []).append(a.get("address", ""))
    address = next((by_type[t][0] for t in _ADDRESS_ORDER if t in by_type), None)
    if address is None:
        return None
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 0)
    target = {"__address__": join_host_port(address, port), "instance": name}
    for kind, values in by_type.items():
        target[sanitize(PREFIX + "node_address_" + kind)] = values[0]
    group.targets.append(target)
    return group
