"""kubernetes_sd_configs: Prometheus 2.42's Kubernetes discovery over shared LIST + WATCH informers.

client.py reaches the API server, informer.py keeps one resource current, view.py turns informers into one
role's target groups, registry.py shares both across every config of the node, provider.py plugs a config
into the discovery manager; pod.py, node.py, service.py, endpoints.py, endpointslice.py and ingress.py
build each role's targets and labels.
"""
