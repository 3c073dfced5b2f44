"""Configs a migrating user brings: discovery blocks validated as Prometheus 2.42 validates them, mechanisms
this node does not run refused (or, opted in, shown), configs stored by the last Grafana Agent releases, and
the Agent's validation wording. Real node subprocesses; etcd where values are written around the API."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import main as cli_main
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, node_config
from tests.helpers.polling import wait_for

pytestmark = pytest.mark.slow

CONFIG = "/agent/api/v1/config/"
CONFIGS = "/agent/api/v1/configs"
TARGETS = "/agent/api/v1/metrics/targets"


def job(extra: str, name: str = "j") -> str:
    return f"scrape_configs:\n- job_name: {name}\n{extra}"


def error_of(resp) -> str:  # type: ignore[no-untyped-def]
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    return str(resp.json()["data"]["error"])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("migration") / "node", node_config(store="embedded")).start()
    yield proc
    proc.stop()


@pytest.mark.parametrize(("block", "fragment"), [
    ("  consul_sd_configs: [{serverr: 'c:8500'}]\n", "field serverr not found in type consul.SDConfig"),
    ("  gce_sd_configs: [{project: p}]\n", "GCE SD configuration requires a zone"),
    ("  hetzner_sd_configs: [{role: pods}]\n", 'unknown role "pods"'),
    ("  dockerswarm_sd_configs: [{host: 'unix:///d.sock'}]\n", "role missing (one of: tasks, services, nodes)"),
    ("  ec2_sd_configs: [{}]\n", "EC2 SD configuration requires a region"),
])
def test_malformed_sd_blocks_are_400_unmarshal(node: NodeProcess, block: str, fragment: str) -> None:
    resp = node.request("PUT", CONFIG + "bad-sd", job(block))
    assert resp.status == 400, resp.text
    error = error_of(resp)
    assert error.startswith("could not unmarshal config: ") and fragment in error, error


@pytest.mark.parametrize("mechanism", ["consul", "eureka", "marathon"])
def test_mechanism_the_node_does_not_run_is_refused_by_name(node: NodeProcess, mechanism: str) -> None:
    entry = {"consul": "{server: 'c:8500'}", "eureka": "{server: 'http://e:8761/eureka'}",
             "marathon": "{servers: ['http://m:8080']}"}[mechanism]
    resp = node.request("PUT", CONFIG + "unsupported", job(f"  {mechanism}_sd_configs: [{entry}]\n"))
    assert resp.status == 400, resp.text
    error = error_of(resp)
    assert error.startswith("failed to validate config: ") and f"uses {mechanism}_sd_configs" in error, error
    assert "accept_unsupported_sd" in error
    assert node.get(f"{CONFIGS}/unsupported").status == 404  # nothing stored


def test_agent_wording_for_defaults_errors(node: NodeProcess) -> None:
    body = "wal_truncate_frequency: 1m\n" + job("  scrape_interval: 5m\n  static_configs: [{targets: ['x:1']}]\n")
    resp = node.request("PUT", CONFIG + "foo", body)
    assert resp.status == 400, resp.text
    assert error_of(resp) == ('failed to validate config: failed to apply defaults to "foo": scrape interval greater '
                              'than wal_truncate_frequency for scrape config with job name "j"')


def test_newer_agent_fields_are_accepted_and_shown(node: NodeProcess) -> None:
    body = job("  track_timestamps_staleness: true\n  enable_compression: false\n"
               "  scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]\n  keep_dropped_targets: 10\n"
               "  native_histogram_bucket_limit: 160\n  static_configs: [{targets: ['127.0.0.1:1']}]\n", "newer") + (
        "remote_write:\n- url: http://127.0.0.1:1/api/v1/write\n  send_native_histograms: true\n"
        "  round_robin_dns: true\n  enable_http2: false\n  queue_config: {sample_age_limit: 5m}\n")
    resp = node.request("PUT", CONFIG + "newer", body)
    assert resp.status == 201, resp.text
    value = node.get(f"{CONFIGS}/newer").json()["data"]["value"]
    for text in ("track_timestamps_staleness: true", "enable_compression: false", "keep_dropped_targets: 10",
                 "sample_age_limit: 5m", "- OpenMetricsText1.0.0"):
        assert text in value, value
    bad = node.request("PUT", CONFIG + "proto", job("  scrape_protocols: [PrometheusProto]\n", "p"))
    assert bad.status == 400 and "PrometheusProto" in error_of(bad)


def test_opted_in_node_accepts_and_shows_the_problem(tmp_path: Path) -> None:
    text = node_config(store="embedded", extra_metrics="  accept_unsupported_sd: true")
    proc = NodeProcess(tmp_path / "node", text).start()
    try:
        body = job("  consul_sd_configs: [{server: 'c:8500', services: [api]}]\n"
                   "  static_configs: [{targets: ['127.0.0.1:1']}]\n", "migrated")
        assert proc.request("PUT", CONFIG + "migrated", body).status == 201

        def problem() -> dict | None:
            for t in proc.get(TARGETS).json()["data"]:
                if t["instance"] == "migrated" and "consul_sd_configs" in t["scrape_error"]:
                    return t
            return None

        shown = wait_for(problem, 30, what="the unsupported discovery in the targets API")
        assert shown["state"] == "down" and "does not run consul" in shown["scrape_error"]
        metrics = proc.get("/metrics").text
        assert 'agent_metrics_unsupported_sd_configs{mechanism="consul"} 1.0' in metrics
    finally:
        proc.stop()


def test_config_check_names_unsupported_discovery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    static = ("  configs:\n  - name: legacy\n    scrape_configs:\n    - job_name: c\n"
              "      consul_sd_configs: [{server: 'c:8500'}]\n")
    refused = tmp_path / "refused.yaml"
    refused.write_text("metrics:\n  wal_directory: w\n" + static)
    assert cli_main(["config-check", str(refused)]) == 1
    assert "uses consul_sd_configs" in capsys.readouterr().err
    opted = tmp_path / "opted.yaml"
    opted.write_text("metrics:\n  wal_directory: w\n  accept_unsupported_sd: true\n" + static)
    assert cli_main(["config-check", str(opted)]) == 0
    out = capsys.readouterr()
    assert "config valid" in out.out and "legacy/c: consul_sd_configs is not run by this node" in out.err


def test_values_stored_by_newer_agents_or_broken_never_make_get_500(tmp_path: Path) -> None:
    """Values written into etcd as Grafana Agent writes them (gzip YAML), around the API."""
    from service.kv.etcd import EtcdKV

    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    try:
        agent_value = gzip.compress(
            b"name: agent\nscrape_configs:\n- job_name: aj\n  track_timestamps_staleness: false\n"
            b"  enable_compression: true\n  scrape_protocols: [OpenMetricsText1.0.0, OpenMetricsText0.0.1, "
            b"PrometheusText0.0.4]\n  keep_dropped_targets: 0\n  native_histogram_bucket_limit: 0\n"
            b"  enable_http2: true\n  follow_redirects: true\n  static_configs: [{targets: ['127.0.0.1:1']}]\n"
            b"remote_write:\n- url: http://127.0.0.1:1/api/v1/write\n  send_native_histograms: false\n"
            b"  queue_config: {sample_age_limit: 0s}\n")

        async def seed() -> None:
            kv = EtcdKV([etcd.endpoint])
            await kv.start()
            await kv.put("configurations/agent", agent_value)
            await kv.put("configurations/not-yaml", gzip.compress(b"scrape_configs: [\x00"))
            await kv.put("configurations/bad-gzip", b"\x1f\x8b\x08garbage")
            await kv.put("configurations/unknown-field", gzip.compress(b"scrape_configs:\n- job_name: u\n  nope: 1\n"))
            await kv.close()

        asyncio.run(seed())
        proc = NodeProcess(tmp_path / "n", node_config(store="etcd", etcd_endpoints=[etcd.endpoint])).start()
        try:
            got = proc.get(f"{CONFIGS}/agent")
            assert got.status == 200, got.text
            assert "job_name: aj" in got.json()["data"]["value"]
            for name, fragment in (("not-yaml", "control characters"), ("bad-gzip", "cannot be decoded"),
                                   ("unknown-field", "field nope not found")):
                resp = proc.get(f"{CONFIGS}/{name}")
                assert resp.status == 422, resp.text
                error = error_of(resp)
                assert error.startswith(f"failed to get config {name}: stored value cannot be read") and \
                    fragment in error, error
            assert "Traceback" not in proc.log()
            assert proc.log().count("stored config cannot be read") >= 3
            metrics = proc.get("/metrics").text
            assert "agent_configapi_unreadable_stored_configs_total 3.0" in metrics
            assert "agent_cluster_configs_invalid 3.0" in metrics  # the owner cannot run them either
            # the Agent's config runs here: its target shows up
            wait_for(lambda: any(t["instance"] == "agent" for t in proc.get(TARGETS).json()["data"]), 30,
                     what="the Agent-stored config to run")
        finally:
            proc.stop()
    finally:
        etcd.stop()
