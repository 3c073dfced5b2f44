"""Kubernetes service discovery against tests/helpers/k8s_apiserver.py, a stand-in API server (no kube-apiserver runs
on this machine).

- Every role's targets and labels are compared with vmagent 1.79's (a real, independent implementation) on
  the same objects. Where vmagent and Prometheus 2.42 differ, Prometheus is right: those labels are listed
  in VMAGENT_LACKS / VMAGENT_EXTRA and their values are asserted exactly.
- The watch follows add/modify/delete, resumes after a cut, re-LISTs after 410 Gone and recovers after the
  API server was down; configs with the same discovery share one watch; host_filter, selectors, namespaces
  and attach_metadata reach the server.
- A real node given a config with kubernetes_sd_configs over the config API discovers and scrapes.

Every discovered address is in 127.0.0.0/8 and configs relabel `__address__` to a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.metrics.config import parse_instance
from service.metrics.discovery.kubernetes import informer as informer_mod
from service.metrics.discovery.kubernetes.provider import KubernetesProvider
from service.metrics.discovery.kubernetes.registry import registry
from tests.helpers import k8s_objects as ko
from tests.helpers.k8s_apiserver import FakeAPIServer
from tests.helpers.node_process import NodeProcess, node_config
from tests.helpers.polling import wait_for, wait_until
from tests.helpers.ports import free_port

ROLES = ("pod", "node", "service", "endpoints", "endpointslice", "ingress")
P = "__meta_kubernetes_"
# Labels Prometheus 2.42 emits that vmagent 1.79 does not, per role (read from Prometheus' discovery/kubernetes).
VMAGENT_LACKS = {
    "pod": {P + "pod_container_id", P + "pod_container_image"},
    "node": set(),
    "service": {P + "service_port_number", P + "service_loadbalancer_ip"},
    "endpoints": {P + "pod_container_image"},
    "endpointslice": {P + "endpointslice_endpoint_conditions_serving",
                      P + "endpointslice_endpoint_conditions_terminating", P + "pod_container_image"},
    "ingress": set(),
}
# vmagent 1.79 leaves the endpoints / endpointslice group labels off the targets it adds for pod container
# ports that no endpoint port covers; Prometheus 2.42 puts them on every target of the group.
VMAGENT_LACKS_ON_EXTRA_PORTS = {
    "endpoints": {P + "endpoints_name", P + "endpoints_label_app", P + "endpoints_labelpresent_app"},
    "endpointslice": {P + "endpointslice_name", P + "endpointslice_address_type"},
}
# Labels vmagent 1.79 emits that Prometheus 2.42 does not: the service's cluster IP and type on endpoints /
# endpointslice targets, and the endpointslice's own labels (a later Prometheus addition).
_SERVICE_EXTRA = (P + "service_cluster_ip", P + "service_type")
VMAGENT_EXTRA_PREFIXES: dict[str, tuple[str, ...]] = {
    "endpoints": _SERVICE_EXTRA,
    "endpointslice": (*_SERVICE_EXTRA, P + "endpointslice_label_", P + "endpointslice_labelpresent_"),
}
VM_INTERNAL = {"__metrics_path__", "__scheme__", "__scrape_interval__", "__scrape_timeout__", "job"}


@pytest.fixture
def apiserver() -> Iterator[FakeAPIServer]:
    srv = FakeAPIServer(free_port(), bookmark_interval=0.3).start()
    for obj in ko.cluster():
        srv.apply(obj)
    try:
        yield srv
    finally:
        srv.stop()


def _sd(block: str):
    cfg = parse_instance(f"scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - {block}\n", "t")
    return cfg.scrape_configs[0].kubernetes_sd_configs[0]


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def _targets(provider: KubernetesProvider) -> list[dict[str, str]]:
    return [{**g.labels, **t} for g in provider.groups.values() for t in g.targets]


async def _discover(srv: FakeAPIServer, role: str, extra: str = "") -> KubernetesProvider:
    provider = KubernetesProvider(_sd(f"{{role: {role}, api_server: '{srv.url}'{extra}}}"))
    changed = asyncio.Event()
    provider.start(changed.set)
    await asyncio.wait_for(changed.wait(), 10)
    return provider


# ------------------------------------------------------------------------------------ vmagent comparison


def _run_vmagent(tmp_path: Path, api_url: str) -> tuple[subprocess.Popen[bytes], int]:
    jobs = []
    for role in ROLES:
        jobs.append({"job_name": role, "kubernetes_sd_configs": [{"role": role, "api_server": api_url}],
                     "relabel_configs": [
                         # Keep every discovered target distinct (vmagent drops duplicates), then point it
                         # at a closed loopback port: no discovered address is ever contacted.
                         {"action": "labelmap", "regex": "__meta_kubernetes_(.+)"},
                         {"source_labels": ["__address__"], "target_label": "orig_address"},
                         {"target_label": "__address__", "replacement": "127.0.0.1:1"}]})
    cfg = tmp_path / "vmagent.yml"
    cfg.write_text(json.dumps({"global": {"scrape_interval": "1h"}, "scrape_configs": jobs}))
    port = free_port()
    log = open(tmp_path / "vmagent.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["/usr/bin/vmagent", f"-promscrape.config={cfg}", "-promscrape.dropOriginalLabels=false",
         "-remoteWrite.url=http://127.0.0.1:1/api/v1/write", f"-remoteWrite.tmpDataPath={tmp_path / 'vmtmp'}",
         f"-httpListenAddr=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, port


def _vmagent_targets(port: int) -> dict[str, list[dict[str, str]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as resp:
        data = json.load(resp)["data"]["activeTargets"]
    out: dict[str, list[dict[str, str]]] = {}
    for t in data:
        labels = {k: v for k, v in t["discoveredLabels"].items() if k not in VM_INTERNAL}
        out.setdefault(t["labels"]["job"], []).append(labels)
    return out


def _as_vmagent_shows(role: str, target: dict[str, str]) -> dict[str, str]:
    lacks = set(VMAGENT_LACKS[role])
    if P + "endpoint_ready" not in target and P + "endpointslice_port" not in target:
        lacks |= VMAGENT_LACKS_ON_EXTRA_PORTS.get(role, set())
    return {k: v for k, v in target.items() if k not in lacks}


def _explain(ours: list[dict[str, str]], theirs: list[dict[str, str]]) -> str:
    """The label differences of the first target (by address) that differs, for the failure message."""
    for a in ours:
        same = [b for b in theirs if b["__address__"] == a["__address__"]]
        if a not in same:
            b = min(same, key=lambda b: len(set(a.items()) ^ set(b.items())), default={})
            return f"{a['__address__']}: ours only {set(a.items()) - set(b.items())}, " \
                   f"vmagent only {set(b.items()) - set(a.items())}"
    return "target counts differ"


def _canon(targets: list[dict[str, str]]) -> list[tuple[tuple[str, str], ...]]:
    return sorted(tuple(sorted(t.items())) for t in targets)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/vmagent"), reason="vmagent (Debian victoria-metrics) missing")
def test_every_role_matches_vmagent_except_documented_differences(apiserver: FakeAPIServer, tmp_path: Path) -> None:
    ours: dict[str, list[dict[str, str]]] = {}

    async def discover_all() -> None:
        for role in ROLES:
            provider = await _discover(apiserver, role)
            ours[role] = _targets(provider)
            await provider.stop()
    asyncio.run(discover_all())
    expected_counts = {role: len(ts) for role, ts in ours.items()}
    assert expected_counts == {"pod": 15, "node": 2, "service": 5, "endpoints": 7, "endpointslice": 6,
                               "ingress": 3}

    proc, port = _run_vmagent(tmp_path, apiserver.url)
    try:
        vm = wait_for(lambda: (lambda t: t if {r: len(t.get(r, [])) for r in ROLES} == expected_counts else None)(
            _vmagent_targets(port)), timeout=30, what="vmagent to discover every target")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)

    for role in ROLES:
        ours_cmp = [_as_vmagent_shows(role, t) for t in ours[role]]
        extra = VMAGENT_EXTRA_PREFIXES.get(role, ("-",))
        theirs = [{k: v for k, v in t.items() if not k.startswith(extra)} for t in vm[role]]
        assert _canon(ours_cmp) == _canon(theirs), (role, _explain(ours_cmp, theirs))
        # What vmagent lacks is present on our side (the exact values are checked below).
        for label in VMAGENT_LACKS[role]:
            assert any(label in t for t in ours[role]), (role, label)


def _by(targets: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [t for t in targets if all(t.get(P + k, t.get(k)) == v for k, v in match.items())]
    assert len(found) == 1, (match, len(found))
    return found[0]


def test_prometheus_only_labels_have_prometheus_values(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        pods = _targets(await _discover(apiserver, "pod"))
        app = _by(pods, __address__="127.0.20.1:8080")
        assert app[P + "pod_container_image"] == "shop/web:1.2"
        assert app[P + "pod_container_id"] == "containerd://app-web-0"
        init = _by(pods, pod_name="web-0", pod_container_name="init-db")
        assert init["__address__"] == "127.0.20.1" and init[P + "pod_container_init"] == "true"
        assert init[P + "pod_container_id"] == "containerd://init-web-0"
        assert init[P + "pod_container_image"] == "busybox:1.36"
        bare = _by(pods, pod_name="web-0", pod_container_name="sidecar")
        assert P + "pod_container_port_number" not in bare and bare[P + "pod_container_init"] == "false"
        assert not [t for t in pods if t.get(P + "pod_name") == "web-pending"]  # no IP yet: no targets

        svcs = _targets(await _discover(apiserver, "service"))
        lb = _by(svcs, __address__="lb.shop.svc:80")
        assert lb[P + "service_loadbalancer_ip"] == "127.0.30.200" and lb[P + "service_port_number"] == "80"
        ext = _by(svcs, __address__="db.shop.svc:5432")
        assert ext[P + "service_external_name"] == "db.example.internal" and P + "service_cluster_ip" not in ext

        eps = _targets(await _discover(apiserver, "endpoints"))
        ready = _by(eps, __address__="127.0.20.1:8080")
        assert ready[P + "endpoints_name"] == "web" and ready[P + "endpoints_label_app"] == "web"
        assert ready[P + "pod_container_image"] == "shop/web:1.2" and ready[P + "endpoint_ready"] == "true"
        assert _by(eps, __address__="127.0.20.2:8080")[P + "endpoint_ready"] == "false"
        extra = _by(eps, __address__="127.0.20.1:9090")  # a container port no endpoint port names
        assert extra[P + "pod_container_port_name"] == "metrics" and P + "endpoint_ready" not in extra
        assert extra[P + "endpoints_name"] == "web"  # group labels reach the extra-port targets too
        assert P + "pod_container_name" not in _by(eps, __address__="127.0.40.1:8080")

        slices = _targets(await _discover(apiserver, "endpointslice"))
        s0 = _by(slices, __address__="127.0.20.1:8080")
        assert (s0[P + "endpointslice_name"], s0[P + "endpointslice_address_type"]) == ("web-abc12", "IPv4")
        assert s0[P + "endpointslice_endpoint_conditions_serving"] == "true"
        assert s0[P + "endpointslice_endpoint_conditions_terminating"] == "false"
        assert s0[P + "endpointslice_port_app_protocol"] == "http"
        s1 = _by(slices, __address__="127.0.20.2:8080")
        assert (s1[P + "endpointslice_endpoint_conditions_ready"], s1[P + "endpointslice_endpoint_conditions_serving"],
                s1[P + "endpointslice_endpoint_conditions_terminating"]) == ("false", "true", "true")

        ings = _targets(await _discover(apiserver, "ingress"))
        assert {(t[P + "ingress_scheme"], t[P + "ingress_host"], t[P + "ingress_path"]) for t in ings} == {
            ("https", "www.shop.test", "/"), ("https", "www.shop.test", "/api"), ("http", "plain.test", "/")}
        assert {t[P + "ingress_class_name"] for t in ings} == {"nginx"}

        nodes = _targets(await _discover(apiserver, "node"))
        a = _by(nodes, __address__="127.0.10.1:10250")
        assert a["instance"] == "node-a" and a[P + "node_address_InternalIP"] == "127.0.10.1"
        assert a[P + "node_provider_id"] == "kind://docker/kind/node-a"
        for view in list(registry().views.values()):
            await registry().release_view(view.value)
    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------- watching


def test_targets_follow_add_modify_delete_within_a_second(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        provider = await _discover(apiserver, "pod")
        apiserver.apply(ko.pod("new-0", "127.0.22.1"))
        t0 = time.monotonic()
        await wait_until(lambda: "pod/shop/new-0" in provider.groups, timeout=1.0)
        changed = ko.pod("new-0", "127.0.22.1", labels={"app": "changed"})
        apiserver.apply(changed)
        await wait_until(lambda: provider.groups["pod/shop/new-0"].labels.get(P + "pod_label_app") == "changed",
                         timeout=1.0)
        apiserver.delete("Pod", "new-0", ko.NS)
        await wait_until(lambda: "pod/shop/new-0" not in provider.groups, timeout=1.0)
        assert time.monotonic() - t0 < 3.0
        assert apiserver.requests["list pods"] == 1  # all of it over the one watch
        await provider.stop()
    asyncio.run(scenario())


def test_watch_resumes_after_cut_and_relists_after_410(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        provider = await _discover(apiserver, "pod")
        await wait_until(lambda: apiserver.requests["watch pods"] == 1)
        apiserver.drop_watches()
        await wait_until(lambda: apiserver.requests["watch pods"] >= 2, timeout=5)
        assert apiserver.requests["list pods"] == 1  # resumed from its resourceVersion, no re-LIST
        apiserver.apply(ko.pod("after-cut", "127.0.22.2"))
        await wait_until(lambda: "pod/shop/after-cut" in provider.groups, timeout=2)

        # History compacted while the watch is cut: resuming gets 410 Gone, so the informer lists again,
        # and a pod deleted meanwhile disappears through the list (client-go's Replace).
        gone_before = _sample("agent_kubernetes_sd_requests_total", verb="watch", outcome="gone")
        deletes_before = _sample("prometheus_sd_kubernetes_events_total", role="pod", event="delete")
        apiserver.compact()
        apiserver.delete("Pod", "after-cut", ko.NS)
        apiserver.compact()
        apiserver.drop_watches()
        await wait_until(lambda: "pod/shop/after-cut" not in provider.groups, timeout=8)
        # First LIST at "0" (the API server's cache); after the 410 at the version it had, which is gone
        # too (410 Expired), then at "".
        assert apiserver.list_versions[0] == "0"
        assert apiserver.list_versions[-1] == "" and apiserver.list_versions[-2] not in ("", "0")
        assert _sample("agent_kubernetes_sd_requests_total", verb="watch", outcome="gone") > gone_before
        assert _sample("prometheus_sd_kubernetes_events_total", role="pod", event="delete") == deletes_before + 1
        assert _sample("agent_kubernetes_sd_informers") >= 1
        await provider.stop()
    asyncio.run(scenario())


def test_backs_off_while_api_server_is_down_and_recovers(apiserver: FakeAPIServer, monkeypatch) -> None:
    monkeypatch.setattr(informer_mod, "BACKOFF_INITIAL", 0.1)

    async def scenario() -> None:
        provider = await _discover(apiserver, "node")
        await wait_until(lambda: apiserver.requests["watch nodes"] >= 1)
        await asyncio.to_thread(apiserver.stop)
        inf = next(iter(registry().informers.values())).value
        await wait_until(lambda: inf.last_error != "", timeout=5)
        await asyncio.sleep(1.0)  # let a few retries pass
        with_backoff = inf.watches
        assert with_backoff < 10, "retries must back off, not spin"
        await asyncio.to_thread(apiserver.start)
        apiserver.apply(ko.node("node-c", "127.0.10.3"))
        await wait_until(lambda: "node/node-c" in provider.groups, timeout=10)
        await provider.stop()
    asyncio.run(scenario())


def test_configs_with_the_same_discovery_share_one_watch(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        providers = [await _discover(apiserver, "pod") for _ in range(50)]
        other_ns = await _discover(apiserver, "pod", ", namespaces: {names: [other]}")
        stats = registry().stats()
        assert stats["informers"] == 2 and stats["views"] == 2 and stats["clients"] == 1
        assert apiserver.requests["list pods"] == 2
        assert all(p.groups is providers[0].groups for p in providers)  # each object stored and built once
        stores = [e.value.store for e in registry().informers.values()]
        assert all("managedFields" not in o["metadata"] for store in stores for o in store.values())
        assert set(other_ns.groups) == {"pod/other/api-0"}
        for p in providers:
            await p.stop()
        assert registry().stats()["informers"] == 1
        await other_ns.stop()
        assert registry().stats() == {**registry().stats(), "informers": 0, "views": 0, "clients": 0}
    asyncio.run(scenario())


def test_selectors_host_filter_and_attach_metadata_reach_the_server(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        sel = await _discover(apiserver, "pod", ", selectors: [{role: pod, label: 'app in (web)', "
                                                "field: 'status.phase=Running'}]")
        assert set(sel.groups) == {"pod/shop/web-0", "pod/shop/web-1"}
        host = KubernetesProvider(_sd(f"{{role: pod, api_server: '{apiserver.url}'}}"), host="node-b")
        changed = asyncio.Event()
        host.start(changed.set)
        await asyncio.wait_for(changed.wait(), 10)
        assert set(host.groups) == {"pod/other/api-0"}
        meta = await _discover(apiserver, "pod", ", attach_metadata: {node: true}")
        web0 = meta.groups["pod/shop/web-0"].labels
        assert web0[P + "node_name"] == "node-a" and web0[P + "node_label_topology_kubernetes_io_zone"] == "z1"
        assert P + "node_annotation_node_alpha_kubernetes_io_ttl" not in web0
        zone2 = ko.node("node-a", "127.0.10.1")
        zone2["metadata"]["labels"]["topology.kubernetes.io/zone"] = "z2"
        apiserver.apply(zone2)  # a node change rebuilds the pods on it
        await wait_until(lambda: meta.groups["pod/shop/web-0"].labels.get(
            P + "node_label_topology_kubernetes_io_zone") == "z2", timeout=2)
        for p in (sel, host, meta):
            await p.stop()
    asyncio.run(scenario())


def test_service_change_relabels_its_endpoints(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        eps = await _discover(apiserver, "endpoints")
        slices = await _discover(apiserver, "endpointslice")
        svc = ko.service("web")
        svc["metadata"]["labels"]["tier"] = "front"
        apiserver.apply(svc)
        for p, source in ((eps, "endpoints/shop/web"), (slices, "endpointslice/shop/web-abc12")):
            await wait_until(lambda p=p, source=source: p.groups[source].labels.get(P + "service_label_tier")
                             == "front", timeout=2)
            await p.stop()
    asyncio.run(scenario())


def test_label_index_keeps_groups_whose_targets_set_the_label(apiserver: FakeAPIServer) -> None:
    async def scenario() -> None:
        provider = await _discover(apiserver, "pod")

        def sources(name: str, value: str) -> set[str]:
            return {g.source for g in provider.groups_with_label(P + name, value)}
        assert sources("pod_label_app", "api") == {"pod/other/api-0"}
        # A target-level label: every pod with targets is a candidate, whatever the group says.
        assert sources("pod_container_port_name", "metrics") == {"pod/shop/web-0", "pod/shop/web-1",
                                                                  "pod/other/api-0"}
        apiserver.apply(ko.pod("web-1", "127.0.20.2", labels={"app": "api"}))
        await wait_until(lambda: sources("pod_label_app", "api") == {"pod/other/api-0", "pod/shop/web-1"})
        apiserver.delete("Pod", "api-0", "other")
        await wait_until(lambda: sources("pod_label_app", "api") == {"pod/shop/web-1"})
        await provider.stop()
    asyncio.run(scenario())


def test_kubeconfig_file_current_context_is_used(apiserver: FakeAPIServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": apiserver.url}},
                     {"name": "other", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "kube-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
    }))

    async def scenario() -> None:
        provider = KubernetesProvider(_sd(f"{{role: node, kubeconfig_file: '{kubeconfig}'}}"))
        changed = asyncio.Event()
        provider.start(changed.set)
        await asyncio.wait_for(changed.wait(), 10)
        assert set(provider.groups) == {"node/node-a", "node/node-b"}
        assert apiserver.authorizations["Bearer kube-token"] >= 1
        await provider.stop()
    asyncio.run(scenario())


def test_in_cluster_service_account_token_ca_and_own_namespace(tmp_path: Path, monkeypatch) -> None:
    """The in-cluster path: KUBERNETES_SERVICE_HOST/PORT, HTTPS verified with the service account CA, the
    token re-read after it rotates, own_namespace from the namespace file."""
    from service.metrics.discovery.kubernetes import client as client_mod
    from tests.helpers.certs import make_certs

    certs = make_certs(tmp_path / "certs")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server.crt"], certs["server.key"])
    srv = FakeAPIServer(free_port(), bookmark_interval=0.3, ssl_context=ctx).start()
    for obj in ko.cluster():
        srv.apply(obj)
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("sa-token-1\n")
    (sa / "ca.crt").write_bytes(certs["ca.crt"].read_bytes())
    (sa / "namespace").write_text("other")
    monkeypatch.setattr(client_mod, "SERVICE_ACCOUNT_DIR", str(sa))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(srv.port))

    async def scenario() -> None:
        provider = KubernetesProvider(_sd("{role: pod, namespaces: {own_namespace: true}}"))
        changed = asyncio.Event()
        provider.start(changed.set)
        await asyncio.wait_for(changed.wait(), 10)
        assert set(provider.groups) == {"pod/other/api-0"}
        await wait_until(lambda: srv.authorizations["Bearer sa-token-1"] >= 2)  # LIST and WATCH
        (sa / "token").write_text("sa-token-2\n")
        srv.drop_watches()
        await wait_until(lambda: srv.authorizations["Bearer sa-token-2"] >= 1, timeout=8)
        await provider.stop()
    try:
        asyncio.run(scenario())
    finally:
        srv.stop()


def test_scrape_pool_follows_label_changes_with_a_group_level_keep(apiserver: FakeAPIServer) -> None:
    """The pool reuses relabel results of unchanged groups: a changed pod must still be re-evaluated."""
    from service.metrics.scrape.manager import ScrapeManager
    from tests.helpers.scrape_targets import scrape_config

    async def append(body: bytes) -> None:
        return None

    async def scenario() -> None:
        sc = scrape_config(
            f"job_name: j\nscrape_interval: 1h\nscrape_timeout: 10s\n"
            f"kubernetes_sd_configs:\n- {{role: pod, api_server: '{apiserver.url}'}}\n"
            f"relabel_configs:\n- {{source_labels: [__meta_kubernetes_pod_label_app], regex: web, action: keep}}\n"
            f"- {{source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}}\n"
            f"- {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}\n"
            f"- {{target_label: __address__, replacement: '127.0.0.1:1'}}\n")
        mgr = ScrapeManager("i", [sc], append)
        await mgr.start()

        def pods() -> set[str]:
            return {t["labels"]["pod"] for t in mgr.targets()}
        try:
            await wait_until(lambda: pods() == {"web-0", "web-1"}, timeout=5)
            apiserver.apply(ko.pod("web-1", "127.0.20.2", labels={"app": "api"}))
            await wait_until(lambda: pods() == {"web-0"}, timeout=2)
            apiserver.apply(ko.pod("web-1", "127.0.20.2"))
            await wait_until(lambda: pods() == {"web-0", "web-1"}, timeout=2)
        finally:
            await mgr.stop(write_stale=False)
    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------- a node


@pytest.mark.slow
def test_node_discovers_and_scrapes_through_the_config_api(apiserver: FakeAPIServer, tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_config()).start()
    try:
        body = (f"scrape_configs:\n- job_name: k8s-pods\n  scrape_interval: 1s\n  scrape_timeout: 500ms\n"
                f"  kubernetes_sd_configs:\n  - {{role: pod, api_server: '{apiserver.url}',"
                f" namespaces: {{names: [shop]}}}}\n"
                f"  relabel_configs:\n"
                f"  - {{source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}}\n"
                f"  - {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}\n"
                f"  - {{target_label: __address__, replacement: '127.0.0.1:{node.port}'}}\n")
        resp = node.request("PUT", "/agent/api/v1/config/k8s", body)
        assert resp.status in (200, 201), resp.body

        def targets() -> list[dict]:
            data = json.loads(node.get("/agent/api/v1/metrics/targets").body)["data"]
            return [t for t in data if t["target_group"] == "k8s-pods"]
        wait_for(lambda: {t["labels"].get("pod") for t in targets()} == {"web-0", "web-1"}, timeout=20,
                 what="both pods discovered")
        wait_for(lambda: all(t["state"] == "up" for t in targets()), timeout=20, what="targets scraped")
        assert all(t["discovered_labels"][P + "pod_container_port_number"] == "9090" for t in targets())
        apiserver.apply(ko.pod("web-2", "127.0.20.3"))
        wait_for(lambda: {t["labels"].get("pod") for t in targets()} == {"web-0", "web-1", "web-2"}, timeout=10,
                 what="a new pod to become a target")
        apiserver.delete("Pod", "web-0", ko.NS)
        wait_for(lambda: {t["labels"].get("pod") for t in targets()} == {"web-1", "web-2"}, timeout=10,
                 what="a deleted pod to stop being a target")
        bad = node.request("PUT", "/agent/api/v1/config/bad", "scrape_configs:\n- job_name: b\n"
                                                              "  kubernetes_sd_configs: [{role: pods}]\n")
        assert bad.status == 400
        assert json.loads(bad.body)["data"]["error"].startswith("could not unmarshal config: ")
        assert 'unknown Kubernetes SD role "pods"' in json.loads(bad.body)["data"]["error"]
    finally:
        node.stop()
