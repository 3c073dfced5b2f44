"""Kubernetes discovery benchmark: C configs (each its own metrics instance's ScrapeManager, one scrape config
with pod discovery) against one stand-in API server holding P pods, as a node running many configs against
one cluster does.

Reports the LIST / WATCH requests the server received (one shared watch, not one per config), the node
process's RSS growth, the time until every config's targets exist, and the time for a new pod to become a
target. Each config keeps the 5 pods labelled for it, so targets stay realistic (C*5 in all); scrape loops
point at a closed loopback port with a 1h interval, so no discovered address is ever contacted.

The stand-in API server (tests/helpers/k8s_apiserver.py; no kube-apiserver runs here) runs in its own process.
Run: ``python bench/k8s_sd.py [--configs 1000] [--pods 5000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pod(i: int, configs: int) -> dict:
    name = f"pod-{i}"
    ip = f"127.{1 + i // 65536}.{(i // 256) % 256}.{i % 256}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": f"ns-{i % 10}", "uid": f"uid-{i}",
                     "labels": {"app": f"app-{i % configs}", "pod-template-hash": "5d4f8c"},
                     "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {"nodeName": f"node-{i % 50}",
                 "containers": [{"name": "app", "image": "shop/app:1",
                                 "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "127.0.0.2",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "containerID": f"containerd://{i}", "ready": True}]},
    }


def serve(port: int, pods: int, configs: int) -> None:
    from tests.helpers.k8s_apiserver import FakeAPIServer

    srv = FakeAPIServer(port, bookmark_interval=5.0).start()
    for i in range(pods):
        srv.apply(pod(i, configs))
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    srv.stop()


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as resp:
        return json.load(resp)


async def run(port: int, configs: int, pods: int) -> dict[str, float]:
    from service.metrics.discovery.kubernetes.registry import registry
    from service.metrics.scrape.manager import ScrapeManager
    from tests.helpers.scrape_targets import scrape_config

    async def append(body: bytes) -> None:
        return None

    base_rss = rss_mb()
    managers = []
    for i in range(configs):
        sc = scrape_config(
            f"job_name: job-{i}\nscrape_interval: 1h\nscrape_timeout: 10s\n"
            f"kubernetes_sd_configs:\n- {{role: pod, api_server: 'http://127.0.0.1:{port}'}}\n"
            f"relabel_configs:\n"
            f"- {{source_labels: [__meta_kubernetes_pod_label_app], regex: app-{i}, action: keep}}\n"
            f"- {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}\n"
            f"- {{target_label: __address__, replacement: '127.0.0.1:1'}}\n")
        managers.append(ScrapeManager(f"cfg-{i}", [sc], append))
    want = configs * (pods // configs)

    def existing() -> int:
        return sum(len(p.loops) for m in managers for p in m.pools.values())

    t0 = time.monotonic()
    for m in managers:
        await m.start()
    while existing() < want:
        await asyncio.sleep(0.05)
    all_targets = time.monotonic() - t0
    settled_rss = rss_mb()

    # One more pod for config 0: how long until it is a target there.
    t1 = time.monotonic()
    await asyncio.to_thread(_post_pod, port, pods, configs)
    pool0 = next(iter(managers[0].pools.values()))
    while len(pool0.loops) < pods // configs + 1:
        await asyncio.sleep(0.01)
    new_pod = time.monotonic() - t1

    reg = registry().stats()
    for m in managers:
        await m.stop()
    return {"all_targets_s": all_targets, "new_pod_s": new_pod, "rss_growth_mb": settled_rss - base_rss,
            "rss_mb": settled_rss, "informers": reg["informers"], "objects_held": reg["objects"]}


def _post_pod(port: int, pods: int, configs: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_apply", data=json.dumps(pod(pods, configs)).encode(),
                                 method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.pods, args.configs)
        return
    from tests.helpers.ports import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--pods", str(args.pods),
                               "--configs", str(args.configs)], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("stand-in API server did not start")
        result = asyncio.run(run(port, args.configs, args.pods))
        requests = stats(port)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(10)
    print(f"configs={args.configs} pods={args.pods} targets={args.configs * (args.pods // args.configs)}")
    print(f"API requests: list pods={requests.get('list pods', 0)} watch pods={requests.get('watch pods', 0)} "
          f"(informers held: {result['informers']}, objects held: {result['objects_held']})")
    print(f"time until all targets exist: {result['all_targets_s']:.2f}s")
    print(f"new pod -> target: {result['new_pod_s'] * 1000:.0f}ms")
    print(f"RSS: {result['rss_mb']:.0f} MB ({result['rss_growth_mb']:+.0f} MB for discovery + targets)")


if __name__ == "__main__":
    main()
