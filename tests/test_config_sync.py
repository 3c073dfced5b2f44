"""`scraping-service config-sync` (the installed console script) against a real node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.certs import make_certs
from tests.helpers.cli import run_cli
from tests.helpers.node_process import NodeProcess, node_config
from tests.helpers.polling import wait_for
from tests.helpers.ports import free_port

CONFIGS = "/agent/api/v1/configs"


def body(job: str) -> str:
    return f"scrape_configs:\n- job_name: {job}\n  static_configs: [{{targets: ['127.0.0.1:9']}}]\n"


def names(node: NodeProcess) -> list[str]:
    return node.get(CONFIGS).json()["data"]["configs"]


def test_config_sync(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_config(store="embedded")).start()
    local = tmp_path / "configs"
    local.mkdir()
    (local / "alpha.yaml").write_text(body("a"))
    (local / "beta gamma.yml").write_text(body("b"))
    (local / "notes.txt").write_text("not a config")
    (local / "sub").mkdir()
    (local / "sub" / "nested.yaml").write_text(body("n"))
    addr = f"http://127.0.0.1:{node.port}"
    try:
        assert node.request("PUT", "/agent/api/v1/config/remote-only", body("r")).status == 201

        dry = run_cli("config-sync", "--dry-run", "-a", addr, str(local), cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.splitlines() == ["2 config files checked", "would create config alpha",
                                           "would create config beta gamma", "would delete config remote-only",
                                           "dry run: 2 to create, 0 to update, 1 to delete; no change made"]
        dry = run_cli("config-sync", "--dry-run", "--json", "-a", addr, str(local), cwd=tmp_path)
        assert json.loads(dry.stdout) == {"dry_run": True, "create": ["alpha", "beta gamma"], "update": [],
                                          "delete": ["remote-only"]}
        assert names(node) == ["remote-only"]

        result = run_cli("config-sync", "--addr", addr, str(local), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "created config alpha" in result.stdout and "deleted config remote-only" in result.stdout
        assert "2 created, 0 updated, 1 deleted, 0 failed" in result.stdout
        assert names(node) == ["alpha", "beta gamma"]

        (local / "alpha.yaml").write_text(body("a2"))
        result = run_cli("config-sync", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 0 and "0 created, 2 updated, 0 deleted" in result.stdout
        assert "job_name: a2" in node.get(f"{CONFIGS}/alpha").json()["data"]["value"]

        # One bad file aborts before any change.
        (local / "broken.yaml").write_text("scrape_configs: [\n")
        (local / "zeta.yaml").write_text(body("z"))
        result = run_cli("config-sync", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 1 and f"{local}/broken.yaml:2:1: yaml: " in result.stderr
        assert "no change made" in result.stderr
        assert names(node) == ["alpha", "beta gamma"]
        (local / "broken.yaml").unlink()

        # A job_name used by two files is caught before any change, as the API would refuse it.
        (local / "zeta.yaml").write_text(body("a2"))
        for flags in (["--dry-run"], []):
            result = run_cli("config-sync", *flags, "-a", addr, str(local), cwd=tmp_path)
            assert result.returncode == 1
            assert (f'{local}/zeta.yaml: job_name "a2" is also used by the config alpha ({local}/alpha.yaml)'
                    in result.stderr)
        assert names(node) == ["alpha", "beta gamma"]

        # A config the node rejects is reported on stderr with the node's own message.
        (local / "zeta.yaml").write_text(body("z"))
        assert node.request("PUT", "/agent/api/v1/config/other", body("z")).status == 201
        result = run_cli("config-sync", "--yes", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 1
        assert ('failed to upload config zeta: HTTP 400: failed to check uniqueness of config: found multiple '
                'scrape configs in config store with job name "z"') in result.stderr
        assert "one or more configurations failed to be modified" in result.stderr
        assert "check the logs" not in result.stderr + result.stdout
        assert "failed" not in result.stdout.replace("1 failed", "")
    finally:
        node.stop()


def test_config_sync_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(body("a"))
    result = run_cli("config-sync", "-a", f"http://127.0.0.1:{free_port()}", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "cannot reach" in result.stderr
    result = run_cli("config-sync", "-a", "", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "--addr must not be empty" in result.stderr
    result = run_cli("config-sync", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 1 and "cannot read directory" in result.stderr


@pytest.mark.slow
def test_config_sync_refuses_mass_deletes_without_yes(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_config(store="embedded")).start()
    local = tmp_path / "configs"
    local.mkdir()
    (local / "keep.yaml").write_text(body("keep"))
    addr = f"http://127.0.0.1:{node.port}"
    try:
        for i in range(5):
            assert node.request("PUT", f"/agent/api/v1/config/r{i}", body(f"r{i}")).status == 201
        result = run_cli("config-sync", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 1
        assert "this would delete 5 of the 5 configs" in result.stderr and "--yes" in result.stderr
        assert names(node) == [f"r{i}" for i in range(5)]  # nothing changed, not even the upload

        result = run_cli("config-sync", "--yes", "--json", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"dry_run": False, "created": ["keep"], "updated": [],
                                             "deleted": [f"r{i}" for i in range(5)], "failed": []}
        assert names(node) == ["keep"]
    finally:
        node.stop()


@pytest.mark.slow
def test_config_sync_reaches_a_secured_node(tmp_path: Path) -> None:
    """Basic auth, bearer tokens (flag, file, environment), a CA, a client certificate, -insecure-skip-verify."""
    certs = make_certs(tmp_path / "certs")
    tls = (f"  http_tls_config:\n    cert_file: {certs['server.crt']}\n    key_file: {certs['server.key']}\n"
           f"    client_ca_file: {certs['ca.crt']}\n    client_auth_type: RequireAndVerifyClientCert\n"
           "  http_auth:\n    bearer_tokens: [t0ken]\n    basic_auth_users: {admin: s3cret}\n")
    node = NodeProcess(tmp_path / "node", node_config(store="embedded").replace("server:\n", "server:\n" + tls, 1))
    node.start(wait_ready=False)
    local = tmp_path / "configs"
    local.mkdir()
    (local / "a.yaml").write_text(body("a"))
    addr = f"https://127.0.0.1:{node.port}"
    client = ["--cert-file", str(certs["client.crt"]), "--key-file", str(certs["client.key"])]
    try:
        def sync(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return run_cli("config-sync", "--dry-run", "-a", addr, *flags, str(local), cwd=tmp_path, env=env)

        wait_for(lambda: sync("--ca-file", str(certs["ca.crt"]), *client, "--bearer-token", "t0ken")
                 .returncode == 0, 20, what="the TLS node to answer config-sync")
        token_file = tmp_path / "token"
        token_file.write_text("t0ken\n")
        ok = [
            sync("--ca-file", str(certs["ca.crt"]), *client, "--bearer-token-file", str(token_file)),
            sync("--ca-file", str(certs["ca.crt"]), *client, env={"SCRAPING_SERVICE_BEARER_TOKEN": "t0ken"}),
            sync("--ca-file", str(certs["ca.crt"]), *client, "--username", "admin", "--password", "s3cret"),
            sync("--insecure-skip-verify", *client, "--bearer-token", "t0ken"),
        ]
        for result in ok:
            assert result.returncode == 0, result.stderr
            assert "would create config a" in result.stdout

        no_token = sync("--ca-file", str(certs["ca.crt"]), *client)
        assert no_token.returncode == 1 and "HTTP 401" in no_token.stderr
        unverified = sync(*client, "--bearer-token", "t0ken")
        assert unverified.returncode == 1
        assert "certificate verify failed: self-signed certificate in certificate chain" in unverified.stderr
        missing = sync("--ca-file", str(tmp_path / "nope.crt"), *client)
        assert missing.returncode == 1
        assert f"cannot load the CA file {tmp_path}/nope.crt" in missing.stderr
    finally:
        node.stop()
