"""Kubernetes objects for discovery tests, shaped as `kubectl get -o json` shows them (defaults the API server
fills in, such as port protocols, are present). Every address is in 127.0.0.0/8: nothing discovered here may
point off this machine."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
NS = "shop"


def node(name: str = "node-a", ip: str = "127.0.10.1", kubelet_port: int = 10250) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "z1"},
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"providerID": f"kind://docker/kind/{name}", "podCIDR": "10.244.0.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name},
                          {"type": "InternalIP", "address": "127.0.10.99"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        },
    }


def pod(name: str = "web-0", ip: str = "127.0.20.1", node_name: str = "node-a", ns: str = NS,
        labels: dict[str, str] | None = None, ready: str = "True") -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": f"uid-{name}",
            "labels": labels if labels is not None else {"app": "web", "app.kubernetes.io/part-of": "shop"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u1",
                                 "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}],
        },
        "spec": {
            "nodeName": node_name,
            "initContainers": [{"name": "init-db", "image": "busybox:1.36"}],
            "containers": [
                {"name": "app", "image": "shop/web:1.2",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                           {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "shop/proxy:0.9"},
                {"name": "dns", "image": "shop/dns:1",
                 "ports": [{"containerPort": 53, "protocol": "UDP"}]},
            ],
        },
        "status": {
            "phase": "Running", "hostIP": "127.0.10.1", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": ready}],
            "initContainerStatuses": [{"name": "init-db", "containerID": f"containerd://init-{name}",
                                       "image": "busybox:1.36", "ready": True, "restartCount": 0}],
            "containerStatuses": [
                {"name": "app", "containerID": f"containerd://app-{name}", "ready": True, "restartCount": 0},
                {"name": "sidecar", "containerID": f"containerd://sidecar-{name}", "ready": True, "restartCount": 0},
                {"name": "dns", "containerID": f"containerd://dns-{name}", "ready": True, "restartCount": 0},
            ],
        },
    }


def pending_pod(name: str = "web-pending", ns: str = NS) -> Obj:
    p = pod(name, ns=ns)
    p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
    return p


def service(name: str = "web", ns: str = NS, kind: str = "ClusterIP") -> Obj:
    spec: Obj = {"type": kind, "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                           {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}
    if kind == "ExternalName":
        spec = {"type": kind, "externalName": "db.example.internal",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}
    else:
        spec["clusterIP"] = "127.0.30.1"
        spec["clusterIPs"] = ["127.0.30.1"]
    if kind == "LoadBalancer":
        spec["loadBalancerIP"] = "127.0.30.200"
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-svc-{name}",
                     "labels": {"app": "web", "team/owner": "shop"},
                     "annotations": {"prometheus.io/port": "9090"}},
        "spec": spec, "status": {"loadBalancer": {}},
    }


def endpoints(name: str = "web", ns: str = NS) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        "subsets": [{
            "addresses": [{"ip": "127.0.20.1", "nodeName": "node-a", "hostname": "web-0",
                           "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-0", "uid": "uid-web-0"}},
                          {"ip": "127.0.40.1"}],
            "notReadyAddresses": [{"ip": "127.0.20.2", "nodeName": "node-a",
                                   "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-1",
                                                 "uid": "uid-web-1"}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }],
    }


def endpointslice(name: str = "web-abc12", ns: str = NS, service_name: str = "web") -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service_name,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["127.0.20.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
             "hostname": "web-0", "nodeName": "node-a", "zone": "z1",
             "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-0", "uid": "uid-web-0"}},
            {"addresses": ["127.0.20.2"], "conditions": {"ready": False, "serving": True, "terminating": True},
             "nodeName": "node-a",
             "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-1", "uid": "uid-web-1"}},
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
    }


def ingress(name: str = "shop", ns: str = NS) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"},
                     "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["*.shop.test"], "secretName": "tls"}],
            "rules": [
                {"host": "www.shop.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/api", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
                {"host": "plain.test"},
            ],
        },
        "status": {"loadBalancer": {}},
    }


def cluster() -> list[Obj]:
    """One of everything: two nodes, pods (one not ready, one pending, one in another namespace),
    services of each type, endpoints, an endpointslice and an ingress."""
    return [
        node("node-a", "127.0.10.1"), node("node-b", "127.0.10.2", 10255),
        pod("web-0", "127.0.20.1"), pod("web-1", "127.0.20.2", ready="False"), pending_pod(),
        pod("api-0", "127.0.21.1", node_name="node-b", ns="other", labels={"app": "api"}),
        service("web"), service("lb", kind="LoadBalancer"), service("db", kind="ExternalName"),
        endpoints("web"), endpointslice("web-abc12"), ingress("shop"),
    ]
