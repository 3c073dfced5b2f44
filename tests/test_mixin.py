"""The operator's kit in deploy/mixin: alert rules tested with the real promtool, runbooks for every alert,
generated dashboards that match their sources, every metric they use present on a real node, and the chart
and compose files that ship them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import deploy_tools
from tests.helpers.node_process import NodeProcess, wait_for

ROOT = Path(__file__).resolve().parents[1]
MIXIN = ROOT / "deploy" / "mixin"
CHART = ROOT / "deploy" / "helm" / "scraping-service"
COMPOSE = ROOT / "deploy" / "compose"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROMTOOL = shutil.which("promtool")

# Produced by whoever scrapes the node, not by the node: allowed in rules without being in its /metrics.
SCRAPER_SERIES = {"up"}
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                 "offset", "inf", "nan"}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MIXIN / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def load_build() -> Any:
    spec = importlib.util.spec_from_file_location("mixin_build", MIXIN / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mixin_build"] = module
    spec.loader.exec_module(module)
    return module


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in sorted((MIXIN / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            exprs.extend(target["expr"] for target in panel.get("targets") or [])
        exprs.extend(v["query"] for v in board["templating"]["list"] if v.get("type") == "query")
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers outside label matchers, grouping clauses and
    strings that are neither functions nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\blabel_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,[^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word, rest = match.group(0), text[match.end():]
        if rest.lstrip().startswith("(") or word.lower() in _PROMQL_WORDS or word.startswith("$"):
            continue
        if text[max(0, match.start() - 1)] in "$0123456789.":
            continue
        names.add(word)
    return names


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (instance, le) (rate(foo_bucket{a="b", c=~"d|e"}[5m])))'
            ' > on (x) group_left bar_total / baz offset 5m and label_values(qux, instance)')
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz", "qux"}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus (tests/install-deps.sh)")
def test_promtool_checks_the_rules() -> None:
    proc = subprocess.run([PROMTOOL, "check", "rules", str(MIXIN / "alerts.yaml")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus (tests/install-deps.sh)")
def test_promtool_unit_tests_pass() -> None:
    proc = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yaml"], cwd=MIXIN, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load((MIXIN / "alerts_test.yaml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a non-firing case"


def test_every_alert_links_to_its_runbook() -> None:
    anchors = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
               for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{rule['alert'].lower()}", url
        assert rule["alert"].lower() in anchors, f"no runbook section for {rule['alert']}"
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_generated_files_match_their_sources(tmp_path: Path) -> None:
    build = load_build()
    build.build(tmp_path / "mixin", tmp_path / "chart")
    for name in build.DASHBOARDS:
        fresh = (tmp_path / "mixin" / "dashboards" / f"{name}.json").read_text()
        assert (MIXIN / "dashboards" / f"{name}.json").read_text() == fresh, f"run deploy/mixin/build.py ({name})"
        assert (CHART / "files" / "dashboards" / f"{name}.json").read_text() == fresh
    assert {p.name for p in (MIXIN / "dashboards").glob("*.json")} == {f"{n}.json" for n in build.DASHBOARDS}
    assert (CHART / "files" / "alerts.yaml").read_text() == (MIXIN / "alerts.yaml").read_text()


def test_dashboards_are_sound() -> None:
    for path in sorted((MIXIN / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        assert board["uid"].startswith("scraping-service-")
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["targets"], f"{path.name}: {panel['title']} has no query"


NODE_YAML = """
server:
  log_level: info
metrics:
  wal_directory: data
  global:
    scrape_interval: 1s
  configs:
    - name: m1
      scrape_configs:
        - job_name: self
          static_configs: [{{targets: ['127.0.0.1:{port}']}}]
      remote_write:
        - url: http://127.0.0.1:1/api/v1/write
logs:
  positions_directory: positions
  configs:
    - name: default
      clients: [{{url: 'http://127.0.0.1:1/loki/api/v1/push'}}]
      scrape_configs:
        - job_name: push
          loki_push_api: {{server: {{http_listen_port: {push_port}}}, labels: {{source: push}}}}
"""


def exposed_names(text: str) -> set[str]:
    """Every series name /metrics can show: each family's name and, for histograms and summaries, the
    suffixed names (families without children still announce themselves with # TYPE)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update({f"{name}_sum", f"{name}_count", f"{name}_bucket"})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.slow
def test_every_metric_in_rules_and_dashboards_exists_on_a_real_node(tmp_path: Path) -> None:
    from tests.helpers.ports import free_port

    push_port = free_port()
    node = NodeProcess(tmp_path / "node", "")
    node.config_path.write_text(NODE_YAML.format(port=node.port, push_port=push_port))
    node.start()
    try:
        body = json.dumps({"streams": [{"stream": {"container": "c"}, "values": [[str(10**18), "hello"]]}]})
        resp = node.request("POST", "/loki/api/v1/push", body, {"Content-Type": "application/json"})
        assert resp.status == 204, resp.text

        def scraped() -> bool:
            return any(t["state"] == "up" for t in node.get("/agent/api/v1/metrics/targets").json()["data"])

        wait_for(scraped, timeout=20, what="the node scraping itself")
        exposed = exposed_names(node.get("/metrics").text)
    finally:
        node.stop()
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, set()).add("a dashboard")
    missing = {name: sorted(where) for name, where in used.items()
               if name not in exposed and name not in SCRAPER_SERIES}
    assert not missing, f"not in a node's /metrics: {missing}"
    assert len(used) > 40


# --- the chart ---------------------------------------------------------------------------------------------

def helm_template(tmp: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    helm, env = deploy_tools.helm(), deploy_tools.helm_env(tmp / "home")
    values_file = tmp / "values.json"
    values_file.write_text(json.dumps(values))
    proc = subprocess.run([str(helm), "template", "r1", str(CHART), "--namespace", "mon", "--kube-version",
                           "1.30.0", "-f", str(values_file)], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def test_chart_renders_without_the_kit_by_default(tmp_path: Path) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in helm_template(tmp_path, {})}
    assert not any(kind in ("PrometheusRule", "ServiceMonitor") for kind, _ in kinds)
    assert ("ConfigMap", "r1-scraping-service-dashboards") not in kinds


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus (tests/install-deps.sh)")
def test_chart_renders_the_rules_the_monitor_and_the_dashboards(tmp_path: Path) -> None:
    docs = helm_template(tmp_path, {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"},
                           "runbookBaseUrl": "https://git.example.net/ops/runbooks.md"},
        "dashboards": {"enabled": True},
    })
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prom"
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert [r["alert"] for r in rendered] == [r["alert"] for r in alert_rules()]
    assert rendered[0]["annotations"]["runbook_url"].startswith("https://git.example.net/ops/runbooks.md#")
    assert "{{ $labels.instance }}" in rendered[0]["annotations"]["summary"]  # not evaluated by helm
    # The rendered spec is a valid rules file for the real promtool.
    rules_file = tmp_path / "rendered-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run([str(PROMTOOL), "check", "rules", str(rules_file)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [d for d in docs if d["kind"] == "ServiceMonitor"]
    (board_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards")]
    assert board_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(board_map["data"]) == {f"scraping-service-{p.name}" for p in (MIXIN / "dashboards").glob("*.json")}
    for key, text in board_map["data"].items():
        assert json.loads(text) == json.loads((MIXIN / "dashboards" / key.removeprefix("scraping-service-"))
                                              .read_text())
    # The kinds kubernetes-validate knows (the ConfigMap) pass strict validation.
    cmd, env = deploy_tools.kubernetes_validate()
    manifest = tmp_path / "known.yaml"
    manifest.write_text(yaml.safe_dump_all([board_map]))
    proc = subprocess.run([*cmd, "--strict", "-k", "1.30.0", str(manifest)], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- compose -------------------------------------------------------------------------------------------------

def test_compose_provisions_rules_and_dashboards() -> None:
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yaml"]
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    prom_mounts = compose["services"]["prometheus"]["volumes"]
    assert "../mixin/alerts.yaml:/etc/prometheus/alerts.yaml:ro" in prom_mounts
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert "../mixin/dashboards:/var/lib/grafana/dashboards/scraping-service:ro" in grafana_mounts
    provider = yaml.safe_load((COMPOSE / "grafana" / "dashboards.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/scraping-service"
    datasources = yaml.safe_load((COMPOSE / "grafana" / "datasources.yaml").read_text())
    uids = {d.get("uid") for d in datasources["datasources"]}
    assert "prometheus" in uids  # the dashboards' default data source variable resolves to it
