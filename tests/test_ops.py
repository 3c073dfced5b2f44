"""/-/reload (and SIGHUP) and /-/config against a real node subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.peers import require

BASE = """server:
  log_level: info
metrics:
  wal_directory: data-agent
  global:
    scrape_interval: 15s
  configs:
{configs}
logs:
  positions_directory: /tmp/pos
  configs:
  - name: default
    clients:
    - url: http://127.0.0.1:1/loki/api/v1/push
      drain_timeout: 500ms
      basic_auth: {{username: u, password: loki-very-secret}}
"""


def configs(*names: str) -> str:
    return "\n".join(f"  - name: {n}\n    scrape_configs: []" for n in names) or "    []"


def instances(node: NodeProcess) -> list[str]:
    return node.get("/agent/api/v1/metrics/instances").json()["data"]


def test_reload_applies_changes_and_keeps_running_config_on_bad_file(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, BASE.format(configs=configs("a"))).start()
    try:
        assert instances(node) == ["a"]
        node.config_path.write_text(BASE.format(configs=configs("a", "b")))
        assert node.request("POST", "/-/reload").status == 200
        assert instances(node) == ["a", "b"]

        node.config_path.write_text("metrics:\n  not_a_field: 1\n")
        resp = node.get("/-/reload")
        assert (resp.status, resp.body) == (400, b"")
        assert instances(node) == ["a", "b"]
        assert "reload failed" in node.log()

        node.config_path.write_text(BASE.format(configs=configs("c")))
        os.kill(node.pid, signal.SIGHUP)
        wait_for(lambda: instances(node) == ["c"], 10, what="SIGHUP reload")
        assert node.request("DELETE", "/-/reload").status == 405
    finally:
        node.stop()


def test_config_endpoint_shows_defaults_and_masks_secrets(tmp_path: Path) -> None:
    text = BASE.format(configs=configs("a")).replace(
        "metrics:\n", "metrics:\n  scraping_service_client: null\n")
    node = NodeProcess(tmp_path, text).start()
    try:
        resp = node.get("/-/config")
        assert resp.status == 200
        body = resp.text
        assert "wal_cleanup_age: 12h0m0s" in body
        assert "scrape_interval: 15s" in body
        assert "loki-very-secret" not in body and "<secret>" in body
    finally:
        node.stop()


def test_config_endpoint_disabled_with_read_api(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, BASE.format(configs=configs()), extra_args=["-config.enable-read-api=false"])
    node.start()
    try:
        resp = node.get("/-/config")
        assert (resp.status, resp.text) == (404, "404 - config endpoint is disabled")
    finally:
        node.stop()


def test_integrations_sd_lists_the_agent_integration(tmp_path: Path) -> None:
    text = BASE.format(configs=configs("a")) + "integrations:\n  agent:\n    enabled: true\n  node_exporter: {}\n"
    node = NodeProcess(tmp_path, text).start()
    try:
        address = f"127.0.0.1:{node.port}"
        groups = node.get("/agent/api/v1/metrics/integrations/sd").json()
        assert isinstance(groups, list) and len(groups) == 1
        assert groups[0]["targets"] == [address]
        labels = groups[0]["labels"]
        assert labels["job"] == "integrations/agent" and labels["instance"] == address
        assert labels["__meta_agent_integration_name"] == "agent"
        assert labels["__meta_agent_integration_instance"] == address
        assert labels["__meta_agent_integration_autoscrape"] == "0"
        assert node.get("/agent/api/v1/metrics/integrations/sd?integrations=node_exporter").json() == []
        assert len(node.get("/agent/api/v1/metrics/integrations/sd?integrations=agent,x").json()) == 1
        assert node.get("/agent/api/v1/metrics/integrations/sd?instance=elsewhere:1").json() == []
        assert len(node.get(f"/agent/api/v1/metrics/integrations/sd?instance={address}").json()) == 1
        bad = node.get("/agent/api/v1/metrics/integrations/sd?integrations=%zz")
        assert bad.status == 400 and bad.text.startswith("invalid query parameters")
        targets = node.get("/agent/api/v1/metrics/integrations/targets").json()
        assert targets == {"status": "success", "data": []}
        assert "integrations.node_exporter" in node.log() and "integrations.agent" not in node.log()
    finally:
        node.stop()


def test_self_metrics_pass_promtool(tmp_path: Path) -> None:
    promtool = require("promtool", "prometheus")
    log_file = tmp_path / "app.log"
    log_file.write_text("a tailed line\n")
    tail = (f"    scrape_configs:\n    - job_name: files\n      static_configs:\n      - targets: [localhost]\n"
            f"        labels: {{job: files, __path__: {log_file}}}\n")
    node = NodeProcess(tmp_path, BASE.format(configs=configs("a", "b")) + tail).start()
    try:
        from tests.helpers.rw_payloads import simple_series, write_body

        wait_for(lambda: b"promtail_read_lines_total{" in node.get("/metrics").body, 10, what="file tailing metrics")
        resp = node.request("POST", "/agent/api/v1/metrics/instance/a/write", write_body(simple_series(5)))
        assert resp.status == 204
        node.request("POST", "/agent/api/v1/metrics/instance/missing/write", b"x")
        node.get("/agent/api/v1/metrics/targets")
        push = '{"streams":[{"stream":{"job":"x"},"values":[["1700000000000000000","a line"]]}]}'
        assert node.request("POST", "/loki/api/v1/push", push, {"Content-Type": "application/json"}).status == 204
        node.get("/api/logs/search?query=line")
        exposition = node.get("/metrics")
        assert exposition.status == 200 and b"agent_wal_samples_appended_total" in exposition.body
        result = subprocess.run([promtool, "check", "metrics"], input=exposition.body, capture_output=True,
                                timeout=30)
        # Names kept byte for byte as Alloy and Promtail expose them fail promtool's naming lint; nothing else may.
        upstream = ("loki_source_api_entries_written ", "promtail_read_bytes_total ", "promtail_file_bytes_total ",
                    "promtail_files_active_total ")
        lint = [ln for ln in (result.stdout + result.stderr).decode().splitlines() if not ln.startswith(upstream)]
        assert result.returncode in (0, 3) and not lint, (result.stdout + result.stderr).decode()
    finally:
        node.stop()
