"""The command line: Grafana Agent static-mode flags, clear errors and exit codes.

Every command runs the console script `scraping-service` installed in the venv, as a user would.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.certs import make_certs
from tests.helpers.cli import SCRIPT, run_cli
from tests.helpers.node_process import NodeProcess, free_port, node_config
from tests.helpers.polling import wait_for


def test_missing_config_file_exits_1(tmp_path: Path) -> None:
    result = run_cli(f"-config.file={tmp_path}/absent.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "absent.yaml" in result.stderr and "No such file" in result.stderr


def test_invalid_config_file_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("metrics:\n  unknown_key: 1\n")
    result = run_cli("-config.file", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "field unknown_key not found" in result.stderr


def test_missing_flag_exits_nonzero(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode != 0
    assert "config.file" in result.stderr


def test_expand_env_flag_and_address(tmp_path: Path) -> None:
    port = free_port()
    text = node_config(store="embedded").replace(
        "log_level: info", "log_level: info\n  log_format: ${SCRAPING_SERVICE_TEST_FORMAT:-json}")
    node = NodeProcess(tmp_path, text, extra_args=["-config.expand-env"], port=port)
    node.start()
    try:
        assert node.get("/-/healthy").status == 200
        assert '"component":"server"' in node.log()  # JSON lines: the default from the expanded variable
    finally:
        node.stop()


def test_two_dash_flags_work_too(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(node_config(store="embedded"))
    result = run_cli("config-check", str(tmp_path / "agent.yaml"), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "config valid")
    (tmp_path / "bad.yaml").write_text("server:\n  log_format: xml\n")
    result = run_cli("config-check", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert result.returncode == 1 and 'unrecognized log format "xml"' in result.stderr


@pytest.mark.slow
def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM and each shutdown phase are logged with their deadlines; every line names its component and
    no value is a Python repr."""
    node = NodeProcess(tmp_path, node_config(store="embedded")).start()
    body = ("scrape_configs:\n- job_name: a\n  static_configs: [{targets: ['127.0.0.1:9']}]\n"
            "remote_write:\n- url: http://127.0.0.1:9/api/v1/write\n")
    assert node.request("PUT", "/agent/api/v1/config/a", body).status == 201
    wait_for(lambda: "instance started" in node.log(), timeout=10)
    assert node.stop() == 0
    log = node.log()
    assert "node stopped" in log
    assert re.search(r"component=server signal=SIGTERM phase=http deadline=30s msg=\"shutting down", log)
    assert re.search(r"phase=cluster instances=1 deadline=60s kv_deadline=30s", log)
    assert re.search(r"phase=logs instances=0 deadline=0s", log)
    lines = [line for line in log.splitlines() if line.startswith("ts=")]
    assert lines and all(" component=" in line for line in lines), log
    assert not re.search(r"=(None|True|False)\b", log), log
    assert not re.search(r'="?[A-Z]\w*\(', log), log  # no `Position(segment=...)` style reprs
    started = next(line for line in lines if "remote_write queue started" in line)
    assert 'position="start of the WAL"' in started, started


# --- item 2: the CLI shows what it can do ----------------------------------------------------------------

COMMANDS = ("run", "config-check", "config-sync", "wal-stats", "target-stats", "version", "help")


def test_help_lists_the_subcommands(tmp_path: Path) -> None:
    for flag in ("--help", "-h", "-help", "help"):
        result = run_cli(flag, cwd=tmp_path)
        assert result.returncode == 0, (flag, result.stderr)
        for command in COMMANDS:
            assert re.search(rf"^  {command} ", result.stdout, re.M), (flag, command)
        assert "-config.file" in result.stdout


def test_help_for_a_command(tmp_path: Path) -> None:
    result = run_cli("help", "config-sync", cwd=tmp_path)
    assert result.returncode == 0 and "--dry-run" in result.stdout and "--bearer-token" in result.stdout
    result = run_cli("help", "frobnicate", cwd=tmp_path)
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_version_in_every_form(tmp_path: Path) -> None:
    from service import __version__

    for form in ("version", "--version", "-version"):
        result = run_cli(form, cwd=tmp_path)
        assert result.returncode == 0, (form, result.stderr)
        assert result.stdout.startswith(f"scraping-service, version {__version__} ")


def test_unknown_flag_and_command_are_named(tmp_path: Path) -> None:
    result = run_cli("-config.fil=agent.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "unknown flag -config.fil" in result.stderr
    result = run_cli("--frob", cwd=tmp_path)
    assert result.returncode == 2 and "unknown flag --frob" in result.stderr
    result = run_cli("config-check", "--frob", "a.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "unknown flag --frob" in result.stderr
    result = run_cli("wal-stat", "x", cwd=tmp_path)
    assert result.returncode == 2 and "unknown command 'wal-stat'" in result.stderr


# --- item 1: config-check runs the node's own checks ------------------------------------------------------

BROKEN_NODE = """\
server:
  log_format: xml
  bogus: 1
  http_tls_config:
    cert_file: {missing}/cert.pem
    key_file: {missing}/key.pem
metrics:
  wal_directory: data
  scraping_service:
    enabled: true
    kvstore:
      store: consul
logs:
  positions_directory: positions
  configs:
  - name: default
    scrape_configs:
    - job_name: push
      loki_push_api: {{server: {{http_listen_port: 0}}}}
      pipeline_stages:
      - regexp: {{expression: x}}
"""


def test_config_check_reports_every_problem_with_file_line_and_column(tmp_path: Path) -> None:
    node = tmp_path / "agent.yaml"
    node.write_text(BROKEN_NODE.format(missing=tmp_path / "nope"))
    result = run_cli("config-check", str(node), cwd=tmp_path)
    assert result.returncode == 1 and "config valid" not in result.stdout
    # Decoding problems first: all of them, each where it is.
    assert f"{node}:3:3: field bogus not found in type server.Config" in result.stderr
    assert f'{node}:2:3: server: unrecognized log format "xml"' in result.stderr
    assert "2 problems in 1 file" in result.stderr

    text = node.read_text().replace("log_format: xml", "log_format: json").replace("  bogus: 1\n", "")
    node.write_text(text)
    result = run_cli("config-check", str(node), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        f"{node}:4:16: cannot load the TLS certificate: cannot read cert_file {tmp_path}/nope/cert.pem: No such "
        "file or directory",
        f"{node}:5:15: cannot load the TLS certificate: cannot read key_file {tmp_path}/nope/key.pem: No such "
        "file or directory",
        f"{node}:11:14: kvstore.store consul is not supported: this node keeps configs in etcd or in its "
        "embedded store (set store: etcd or store: embedded)",
        f"{node}:20:9: logs instance default, job push: Unknown stage type: regexp",
        "4 problems in 1 file",
    ]


def test_a_node_that_cannot_start_says_why_in_one_line_each(tmp_path: Path) -> None:
    node = tmp_path / "agent.yaml"
    for store in ("consul", "multi"):
        node.write_text(node_config(store=store))
        result = run_cli(f"-config.file={node}", f"-server.http.address=127.0.0.1:{free_port()}", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"error: node failed to start: {node}:11:14: kvstore.store {store} is not supported: this node keeps "
            "configs in etcd or in its embedded store (set store: etcd or store: embedded)"]
    text = BROKEN_NODE.format(missing=tmp_path / "nope").replace("log_format: xml", "log_format: json")
    node.write_text(text.replace("  bogus: 1\n", "").replace("store: consul", "store: embedded"))
    result = run_cli(f"-config.file={node}", f"-server.http.address=127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 3
    assert all(line.startswith(f"error: node failed to start: {node}:") for line in result.stderr.splitlines())
    assert "Unknown stage type: regexp" in result.stderr and "nope/cert.pem" in result.stderr


def test_config_check_loads_the_certificates_the_node_would(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    node = tmp_path / "agent.yaml"
    tls = (f"  http_tls_config:\n    cert_file: {certs['server.crt']}\n    key_file: {{key}}\n")
    node.write_text("server:\n" + tls.format(key=certs["server.key"]))
    assert run_cli("config-check", str(node), cwd=tmp_path).stdout.strip() == "config valid"
    node.write_text("server:\n" + tls.format(key=certs["client.key"]))  # a key that is not the cert's
    result = run_cli("config-check", str(node), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{node}:3:16: cannot load the TLS certificate {certs['server.crt']} with the key" in result.stderr


def test_config_check_several_files_instances_and_ignored_sections(tmp_path: Path) -> None:
    good = tmp_path / "agent.yaml"
    good.write_text(node_config(store="embedded") + "integrations:\n  node_exporter: {}\ntraces: {}\n")
    other = tmp_path / "other.yaml"
    other.write_text("metrics:\n  wal_directory: [x]\n")
    result = run_cli("config-check", str(good), str(other), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{other}:2:18: cannot unmarshal !!seq into string" in result.stderr
    assert f"{good}: accepted but ignored (not implemented): integrations.node_exporter, traces" in result.stdout

    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yml", tmp_path / "c.yaml"
    a.write_text("scrape_configs:\n- job_name: web\n  static_configs: [{targets: ['127.0.0.1:9']}]\n")
    b.write_text("scrape_configs:\n- job_name: web\n  static_configs: [{targets: ['127.0.0.1:9']}]\n")
    c.write_text("scrape_configs:\n- job_name: c\n  bearer_token_file: /etc/token\n  bogus: 1\n")
    result = run_cli("config-check", str(good), "--instance", str(a), str(b), str(c), cwd=tmp_path)
    assert result.returncode == 1
    assert f'{b}: job_name "web" is also used by the config a ({a}); the config API refuses it' in result.stderr
    assert f"{c}:4:3: field bogus not found in type config.ScrapeConfig" in result.stderr
    c.write_text("scrape_configs:\n- job_name: c\n  bearer_token_file: /etc/token\n")
    result = run_cli("config-check", str(good), "-i", str(c), cwd=tmp_path)
    assert result.returncode == 1
    assert "bearer_token_file must be empty unless dangerous_allow_reading_files is set" in result.stderr
    result = run_cli("config-check", "-i", str(a), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "config valid")
    (tmp_path / "empty.yaml").write_text("")  # the API answers 400 EOF
    result = run_cli("config-check", "-i", str(tmp_path / "empty.yaml"), cwd=tmp_path)
    assert result.returncode == 1 and f"{tmp_path}/empty.yaml: EOF: the document is empty" in result.stderr


# --- item 4: wal-stats and target-stats -------------------------------------------------------------------


def _fill_wals(root: Path) -> tuple[Path, Path]:
    """A metrics instance WAL (2 records, 3 series of job `j`) and a logs instance WAL (one push of 2 entries)."""
    import snappy

    from service.logs.record import RECORD_TYPE, encode_record
    from service.metrics import records
    from service.proto.remote_pb2 import WriteRequest
    from service.wal import WAL

    def request(*series: tuple[str, str]) -> bytes:
        req = WriteRequest()
        for name, instance in series:
            ts = req.timeseries.add()
            for k, v in (("__name__", name), ("instance", instance), ("job", "j")):
                ts.labels.add(name=k, value=v)
            ts.samples.add(value=1.0, timestamp=1_700_000_000_000)
        return snappy.compress(req.SerializeToString())

    metrics_dir, logs_dir = root / "inst-a", root / "logs" / "default"
    wal = WAL.open(str(metrics_dir))
    wal.append(records.WRITE_REQUEST, request(("up", "t:1"), ("up", "t:2")))
    wal.append(records.WRITE_REQUEST, request(("http_requests_total", "t:1")))
    wal.close()
    wal = WAL.open(str(logs_dir))
    wal.append(RECORD_TYPE, encode_record("tenant-1", 2, snappy.compress(b"")))
    wal.close()
    return metrics_dir, logs_dir


def test_wal_stats_totals_json_and_logs_wals(tmp_path: Path) -> None:
    import json

    root = tmp_path / "wal"
    metrics_dir, logs_dir = _fill_wals(root)
    result = run_cli("wal-stats", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"WAL: {metrics_dir} (metrics)" in result.stdout and f"WAL: {logs_dir} (logs)" in result.stdout
    assert "  samples: 3\n  series: 3\n" in result.stdout
    assert "  entries: 2\n  tenants: tenant-1\n" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("total: wals 2, segments 2, records 3, bytes ")
    assert result.stdout.rstrip().endswith("samples 3, series 3, entries 2, corruptions 0")

    data = json.loads(run_cli("wal-stats", "--json", str(root), cwd=tmp_path).stdout)
    assert [(w["kind"], w["records"]) for w in data["wals"]] == [("metrics", 2), ("logs", 1)]
    assert data["totals"]["samples"] == 3 and data["totals"]["entries"] == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("wal-stats", str(empty), cwd=tmp_path)
    assert result.returncode == 1 and f"no WAL segments in {empty}" in result.stderr


def test_wal_stats_corrupt_wal_exits_1_readably(tmp_path: Path) -> None:
    metrics_dir, _ = _fill_wals(tmp_path / "wal")
    segment = sorted(p for p in metrics_dir.iterdir() if p.name.isdigit())[0]
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # inside the last record's payload: its CRC no longer matches
    segment.write_bytes(bytes(data))
    result = run_cli("wal-stats", str(metrics_dir), cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(rf"error: WAL {metrics_dir} is corrupt: segment \d+ at offset \d+: \w", result.stderr)
    assert "Corruption(" not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_target_stats_unknown_job_and_empty_dir_exit_1(tmp_path: Path) -> None:
    import json

    metrics_dir, _ = _fill_wals(tmp_path / "wal")
    result = run_cli("target-stats", str(metrics_dir), "-j", "j", "-i", "t:1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^http_requests_total +1$", result.stdout, re.M) and re.search(r"^TOTAL +2$", result.stdout, re.M)
    result = run_cli("target-stats", "--json", str(metrics_dir), "-j", "j", "-i", "t:1", cwd=tmp_path)
    assert json.loads(result.stdout) == {"job": "j", "instance": "t:1", "total": 2,
                                         "metrics": {"http_requests_total": 1, "up": 1}}
    result = run_cli("target-stats", str(metrics_dir), "-j", "nope", "-i", "t:1", cwd=tmp_path)
    assert result.returncode == 1 and "no series with job='nope'" in result.stderr and "jobs: j" in result.stderr
    result = run_cli("target-stats", str(metrics_dir), "-j", "j", "-i", "t:9", cwd=tmp_path)
    assert result.returncode == 1 and "instances of that job: t:1, t:2" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_cli("target-stats", str(tmp_path / "empty"), "-j", "j", "-i", "t:1", cwd=tmp_path)
    assert result.returncode == 1 and "no metrics WAL records" in result.stderr


def test_no_broken_pipe_traceback_when_piped_to_head(tmp_path: Path) -> None:
    root = tmp_path / "wal"
    _fill_wals(root)
    for _ in range(30):  # enough output that `head -1` closes the pipe while it is still written
        _fill_wals(tmp_path / "more" / str(_))
    result = subprocess.run(f"'{SCRIPT}' wal-stats '{tmp_path}/more' | head -1", shell=True, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.stdout.startswith("WAL: ")
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr


@pytest.mark.slow
def test_a_start_failure_past_the_checks_is_one_line_without_traceback(tmp_path: Path) -> None:
    """A push listener port another process holds: only known at bind time."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    logs = ("logs:\n  positions_directory: positions\n  configs:\n  - name: default\n    scrape_configs:\n"
            f"    - job_name: api\n      loki_push_api: {{server: {{http_listen_address: 127.0.0.1, "
            f"http_listen_port: {port}}}}}\n")
    node = NodeProcess(tmp_path, node_config(store="embedded") + logs)
    try:
        node.start(wait_ready=False)
        assert node.proc is not None and node.proc.wait(20) == 1
    finally:
        holder.close()
    log = node.log()
    assert "Traceback" not in log, log
    failed = [line for line in log.splitlines() if "node failed to start" in line]
    assert len(failed) == 1 and f"cannot listen on 127.0.0.1:{port}" in failed[0]
