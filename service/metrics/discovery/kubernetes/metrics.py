"""Self metrics of Kubernetes discovery: events handled (Prometheus' own series name), informers running and
the LIST / WATCH requests they make, so a node shows that its watches are shared and when they fail."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

# Prometheus' role names for each resource, as its events_total labels them.
ROLE_OF = {"pods": "pod", "services": "service", "endpoints": "endpoints", "nodes": "node",
           "endpointslices": "endpointslice", "ingresses": "ingress"}

EVENTS = Counter("prometheus_sd_kubernetes_events_total", "The number of Kubernetes events handled.",
                 ["role", "event"])
for _role in ROLE_OF.values():
    for _event in ("add", "delete", "update"):
        EVENTS.labels(_role, _event)
INFORMERS = Gauge("agent_kubernetes_sd_informers", "Kubernetes LIST+WATCH informers running, shared by every "
                  "config of the node that discovers the same resource.")
REQUESTS = Counter("agent_kubernetes_sd_requests_total", "LIST and WATCH requests to Kubernetes API servers, by "
                   "outcome: ok, gone (410, listed again) or error.", ["verb", "outcome"])
