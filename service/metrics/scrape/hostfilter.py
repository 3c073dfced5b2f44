"""host_filter as Grafana Agent applies it: keep only targets that run on this node's host."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Sequence

from service.relabel import RelabelConfig, Relabeler

_HOST_LABELS = ("__meta_consul_node", "__meta_dockerswarm_node_id", "__meta_dockerswarm_node_hostname",
                "__meta_dockerswarm_node_address", "__meta_kubernetes_pod_node_name",
                "__meta_kubernetes_node_name", "__host__")
_ALWAYS = ("localhost", "127.0.0.1")


def hostname() -> str:
    return os.environ.get("HOSTNAME") or _system_hostname()


@functools.cache
def _system_hostname() -> str:
    """Asked once: the call is a system call every instance start would otherwise pay for."""
    return socket.gethostname()


def _strip_port(address: str) -> str:
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


class HostFilter:
    def __init__(self, rules: Sequence[RelabelConfig] = (), host: str | None = None) -> None:
        self.relabeler = Relabeler(rules)
        self.host = host or hostname()

    def keep(self, labels: dict[str, str]) -> bool:
        lset = self.relabeler.process(labels) if self.relabeler else labels
        if lset is None:
            return False
        if "__address__" not in lset:
            return True
        allowed = (self.host, *_ALWAYS)
        if _strip_port(lset["__address__"]) in allowed:
            return True
        return any(lset.get(name) and lset[name] in allowed for name in _HOST_LABELS)
