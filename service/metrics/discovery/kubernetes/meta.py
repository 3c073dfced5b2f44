"""Helpers every role shares: the `__meta_kubernetes_` prefix, label-name sanitising, host:port joining,
and the label blocks that more than one role emits (pod, node, service), as Prometheus 2.42 builds them."""

from __future__ import annotations

import re
from typing import Any

Obj = dict[str, Any]
PREFIX = "__meta_kubernetes_"
NAMESPACE = PREFIX + "namespace"
PRESENT = "true"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """prometheus/util/strutil.SanitizeLabelName."""
    return _INVALID.sub("_", name)


def join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort: brackets around hosts that contain a colon."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def add_labels_and_annotations(out: dict[str, str], kind: str, obj: Obj, annotations: bool = True) -> None:
    """`<kind>_label_<name>`, `<kind>_labelpresent_<name>` (and the same for annotations)."""
    m = meta(obj)
    for k, v in (m.get("labels") or {}).items():
        ln = sanitize(k)
        out[f"{PREFIX}{kind}_label_{ln}"] = str(v)
        out[f"{PREFIX}{kind}_labelpresent_{ln}"] = PRESENT
    if annotations:
        for k, v in (m.get("annotations") or {}).items():
            ln = sanitize(k)
            out[f"{PREFIX}{kind}_annotation_{ln}"] = str(v)
            out[f"{PREFIX}{kind}_annotationpresent_{ln}"] = PRESENT


def pod_ready(pod: Obj) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", "")).lower()
    return "unknown"


def pod_labels(pod: Obj) -> dict[str, str]:
    """podLabels() in pod.go: the pod-level labels also merged into endpoints/endpointslice targets."""
    m = meta(pod)
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    out = {
        PREFIX + "pod_name": m.get("name", ""),
        PREFIX + "pod_ip": status.get("podIP", ""),
        PREFIX + "pod_ready": pod_ready(pod),
        PREFIX + "pod_phase": status.get("phase", ""),
        PREFIX + "pod_node_name": spec.get("nodeName", ""),
        PREFIX + "pod_host_ip": status.get("hostIP", ""),
        PREFIX + "pod_uid": m.get("uid", ""),
    }
    for ref in m.get("ownerReferences") or []:
        if ref.get("controller"):
            if ref.get("kind"):
                out[PREFIX + "pod_controller_kind"] = ref["kind"]
            if ref.get("name"):
                out[PREFIX + "pod_controller_name"] = ref["name"]
            break
    add_labels_and_annotations(out, "pod", pod)
    return out


def service_labels(svc: Obj) -> dict[str, str]:
    m = meta(svc)
    out = {PREFIX + "service_name": m.get("name", ""), NAMESPACE: m.get("namespace", "")}
    add_labels_and_annotations(out, "service", svc)
    return out


def node_metadata_labels(node: Obj | None, node_name: str | None) -> dict[str, str]:
    """addNodeLabels() (attach_metadata.node): the node's name and labels, not its annotations."""
    if node is None or node_name is None:
        return {}
    out = {PREFIX + "node_name": node_name}
    add_labels_and_annotations(out, "node", node, annotations=False)
    return out
