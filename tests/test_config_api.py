"""The config API (docs/config-api.md) against real node subprocesses, on the embedded store and on a real etcd."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, node_config
from tests.helpers.polling import wait_for

CONFIG = "/agent/api/v1/config/"
CONFIGS = "/agent/api/v1/configs"
_counter = itertools.count()


def scrape_config(job: str, extra: str = "") -> str:
    return (f"scrape_configs:\n- job_name: {job}\n  static_configs:\n  - targets: ['127.0.0.1:9100']\n{extra}")


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


@pytest.fixture(scope="module", params=["embedded", "etcd"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base = tmp_path_factory.mktemp(f"api-{request.param}")
    etcd = None
    if request.param == "etcd":
        etcd = EtcdServer(base / "etcd")
        etcd.start()
        text = node_config(store="etcd", etcd_endpoints=[etcd.endpoint])
    else:
        text = node_config(store="embedded")
    proc = NodeProcess(base / "node", text).start()
    proc.etcd = etcd  # type: ignore[attr-defined]
    yield proc
    proc.stop()
    if etcd is not None:
        etcd.stop()


def put(node: NodeProcess, name: str, body: str | bytes):
    return node.request("PUT", CONFIG + name, body)


def assert_error(resp, status: int, starts: str) -> None:
    assert resp.status == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == "error"
    assert body["data"]["error"].startswith(starts), body


# --------------------------------------------------------------------------------------------- the rows


def test_put_creates_201_then_overwrites_200(node: NodeProcess) -> None:
    name, job = unique("cfg"), unique("job")
    resp = put(node, name, scrape_config(job))
    assert (resp.status, resp.json()) == (201, {"status": "success"})
    resp = put(node, name, scrape_config(job))  # identical re-PUT
    assert (resp.status, resp.json()) == (200, {"status": "success"})
    resp = node.request("POST", CONFIG + name, scrape_config(job, "  scrape_interval: 30s\n"))
    assert (resp.status, resp.json()) == (200, {"status": "success"})
    value = node.get(f"{CONFIGS}/{name}").json()["data"]["value"]
    assert "scrape_interval: 30s" in value


def test_list_is_sorted_and_decoded(node: NodeProcess) -> None:
    stem = unique("list")
    names = [f"{stem}-b", f"{stem}-a", f"{stem}%2Fslash", f"{stem}-a+b"]
    for name in names:
        assert put(node, name, scrape_config(unique("job"))).status == 201
    listed = node.get(CONFIGS).json()
    assert listed["status"] == "success"
    mine = [n for n in listed["data"]["configs"] if n.startswith(stem)]
    assert mine == sorted([f"{stem}-b", f"{stem}-a", f"{stem}/slash", f"{stem}-a+b"])
    assert listed["data"]["configs"] == sorted(listed["data"]["configs"])
    assert node.get(f"{CONFIGS}/{stem}%2Fslash").status == 200


def test_get_shows_defaults_and_hides_secrets(node: NodeProcess) -> None:
    name = unique("secret")
    body = scrape_config(unique("job"), "  basic_auth:\n    username: u\n    password: hunter2-very-secret\n")
    body += ("remote_flush_deadline: 1s\nremote_write:\n- url: http://127.0.0.1:9/api/v1/write\n"
             "  bearer_token: tok-very-secret\n")
    assert put(node, name, body).status == 201
    resp = node.get(f"{CONFIGS}/{name}")
    assert resp.status == 200
    value = resp.json()["data"]["value"]
    assert f"name: {name}" in value
    assert "wal_truncate_frequency: 1h0m0s" in value
    assert "<secret>" in value
    assert "hunter2-very-secret" not in value and "tok-very-secret" not in value


def test_body_name_is_ignored(node: NodeProcess) -> None:
    name = unique("urlname")
    assert put(node, name, "name: not-this-one\n" + scrape_config(unique("job"))).status == 201
    value = node.get(f"{CONFIGS}/{name}").json()["data"]["value"]
    assert f"name: {name}" in value and "not-this-one" not in value
    assert "not-this-one" not in node.get(CONFIGS).json()["data"]["configs"]


def test_delete_then_404(node: NodeProcess) -> None:
    name = unique("del")
    assert put(node, name, scrape_config(unique("job"))).status == 201
    resp = node.request("DELETE", CONFIG + name)
    assert (resp.status, resp.json()) == (200, {"status": "success"})
    assert_error(node.request("DELETE", CONFIG + name), 404, f"configuration {name} does not exist")
    assert_error(node.get(f"{CONFIGS}/{name}"), 404, f"configuration {name} does not exist")
    assert name not in node.get(CONFIGS).json()["data"]["configs"]


def test_empty_list_shape(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path, node_config(store="embedded")).start()
    try:
        resp = proc.get(CONFIGS)
        assert resp.status == 200
        assert resp.json() == {"status": "success", "data": {"configs": []}}
    finally:
        proc.stop()


@pytest.mark.parametrize(("method", "path"), [
    ("GET", CONFIG + "x"), ("DELETE", CONFIGS + "/x"), ("PUT", CONFIGS + "/x"), ("POST", CONFIGS),
    ("DELETE", CONFIGS),
])
def test_wrong_method_is_405(node: NodeProcess, method: str, path: str) -> None:
    assert node.request(method, path).status == 405


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", CONFIG), ("GET", CONFIGS + "/"), ("PUT", CONFIG + "a/b"), ("GET", "/agent/api/v1/nope"),
    ("DELETE", CONFIG + "x/"), ("GET", CONFIGS + "/a/b"),
])
def test_unknown_path_is_404(node: NodeProcess, method: str, path: str) -> None:
    assert node.request(method, path, b"" if method == "PUT" else None).status == 404


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("body", "fragment"), [
    (b"", "EOF"),
    (b"scrape_configs: []\nbogus_field: 1\n", "bogus_field"),
    (b"scrape_configs: []\nscrape_configs: []\n", "already defined"),
    (b"wal_truncate_frequency: [1, 2]\n", "cannot unmarshal"),
    (b"scrape_configs:\n- job_name: x\n  sample_limit: many\n", "cannot unmarshal"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
    (b"scrape_configs: [\n", "yaml"),
])
def test_bad_yaml_is_400_unmarshal(node: NodeProcess, body: bytes, fragment: str) -> None:
    resp = put(node, unique("bad"), body)
    assert_error(resp, 400, "could not unmarshal config: ")
    assert fragment in resp.json()["data"]["error"]


def test_yaml_bomb_is_rejected_quickly(node: NodeProcess) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    resp = put(node, unique("bomb"), "\n".join(lines) + "\n")
    assert_error(resp, 400, "could not unmarshal config: ")
    assert node.get("/-/healthy").status == 200


def test_oversized_body_is_413(node: NodeProcess) -> None:
    name = unique("huge")
    body = b"# " + b"x" * (10 << 20) + b"\n" + scrape_config(unique("job")).encode()
    resp = put(node, name, body)
    assert_error(resp, 413, "request body too large")
    assert_error(node.get(f"{CONFIGS}/{name}"), 404, "configuration")


@pytest.mark.parametrize("raw", ["bad%00name", "%FF%FE", "a%0Ab"])
def test_invalid_names_are_400(node: NodeProcess, raw: str) -> None:
    assert_error(put(node, raw, scrape_config(unique("job"))), 400, "could not decode config name")


@pytest.mark.parametrize(("raw", "decoded"), [
    ("..", ".."), ("%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "../../etc/passwd"), ("a%2Fb", "a/b"), ("sp%20ace", "sp ace"),
])
def test_path_like_names_are_just_names(node: NodeProcess, raw: str, decoded: str) -> None:
    job = unique("job")
    resp = put(node, raw, scrape_config(job))
    assert resp.status in (200, 201), resp.text
    assert decoded in node.get(CONFIGS).json()["data"]["configs"]
    assert f"job_name: {job}" in node.get(f"{CONFIGS}/{raw}").json()["data"]["value"]
    assert node.request("DELETE", CONFIG + raw).status == 200


def test_validation_errors_are_400(node: NodeProcess) -> None:
    job = unique("job")
    body = scrape_config(job, "  scrape_interval: 10s\n  scrape_timeout: 20s\n")
    resp = put(node, unique("inval"), body)
    assert_error(resp, 400, "failed to validate config: ")
    assert "scrape timeout greater than scrape interval" in resp.json()["data"]["error"]
    resp = put(node, unique("inval"), "wal_truncate_frequency: 0s\n")
    assert_error(resp, 400, "failed to validate config: ")


@pytest.mark.parametrize("extra", [
    "  bearer_token_file: /etc/passwd\n",
    "  basic_auth:\n    username: u\n    password_file: /etc/shadow\n",
    "  tls_config:\n    ca_file: /etc/ssl/ca.pem\n",
    "  file_sd_configs:\n  - files: [/etc/targets.json]\n",
])
def test_reading_files_is_rejected(node: NodeProcess, extra: str) -> None:
    resp = put(node, unique("files"), scrape_config(unique("job"), extra))
    assert_error(resp, 400, "failed to validate config: ")
    message = resp.json()["data"]["error"]
    field = extra.strip().splitlines()[-1].strip().lstrip("- ").split(":")[0]
    assert field in message, message


def test_remote_write_reading_files_is_rejected(node: NodeProcess) -> None:
    body = ("remote_write:\n- url: http://127.0.0.1:9/write\n  tls_config:\n"
            "    cert_file: /c.pem\n    key_file: /k.pem\n")
    resp = put(node, unique("rwfiles"), body)
    assert_error(resp, 400, "failed to validate config: ")
    message = resp.json()["data"]["error"]
    assert "remote_write at index 0" in message and "cert_file must be empty" in message


def test_job_name_unique_across_configs(node: NodeProcess) -> None:
    job = unique("shared-job")
    first = unique("first")
    assert put(node, first, scrape_config(job)).status == 201
    resp = put(node, unique("second"), scrape_config(job))
    assert_error(resp, 400, "failed to check uniqueness of config: found multiple scrape configs in config "
                            f'store with job name "{job}"')
    assert put(node, first, scrape_config(job)).status == 200  # the same config again is fine


def test_rejected_put_changes_nothing(node: NodeProcess) -> None:
    name, job = unique("keep"), unique("job")
    assert put(node, name, scrape_config(job)).status == 201
    before = node.get(f"{CONFIGS}/{name}").json()["data"]["value"]
    assert put(node, name, "nonsense_field: true\n").status == 400
    assert put(node, name, scrape_config(job, "  scrape_timeout: 1h\n")).status == 400
    assert node.get(f"{CONFIGS}/{name}").json()["data"]["value"] == before


# --------------------------------------------------------------------------------------- node behaviour


def test_ready_and_healthy_texts(node: NodeProcess) -> None:
    ready = node.get("/-/ready")
    assert (ready.status, ready.text) == (200, "Agent is Ready.\n")
    healthy = node.get("/-/healthy")
    assert (healthy.status, healthy.text) == (200, "Agent is Healthy.\n")


def _access_lines(node: NodeProcess) -> list[str]:
    return [line for line in node.log().splitlines() if "component=http" in line and f"path={CONFIGS}" in line]


def test_no_access_log_line_per_request_at_info(node: NodeProcess) -> None:
    assert node.get(CONFIGS).status == 200
    assert _access_lines(node) == []


def test_access_log_is_structured_at_debug(tmp_path: Path) -> None:
    text = node_config(store="embedded").replace("log_level: info", "log_level: debug", 1)
    node = NodeProcess(tmp_path, text).start()
    try:
        node.get(CONFIGS)
        lines = wait_for(lambda: _access_lines(node), 5, what="an access log line")
        assert "level=debug" in lines[-1]
        assert "method=GET" in lines[-1] and "status=200" in lines[-1] and "duration=" in lines[-1]
    finally:
        node.stop()


def test_read_api_can_be_disabled(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path, node_config(store="embedded"), extra_args=["-config.enable-read-api=false"])
    proc.start()
    try:
        assert put(proc, "c", scrape_config("j")).status == 201
        resp = proc.get(f"{CONFIGS}/c")
        assert (resp.status, resp.text) == (404, "404 - config endpoint is disabled")
        assert proc.get(CONFIGS).json()["data"]["configs"] == ["c"]
    finally:
        proc.stop()


def test_embedded_store_survives_restart_and_kill(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path, node_config(store="embedded")).start()
    try:
        assert put(proc, "persist", scrape_config("pj")).status == 201
        proc.stop()
        proc.start()
        assert proc.get(CONFIGS).json()["data"]["configs"] == ["persist"]
        assert put(proc, "after-kill", scrape_config("pk")).status == 201
        proc.kill()
        proc.start()
        assert proc.get(CONFIGS).json()["data"]["configs"] == ["after-kill", "persist"]
    finally:
        proc.stop()


def test_etcd_nodes_share_configs_and_survive_outage(tmp_path: Path) -> None:
    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    text = node_config(store="etcd", etcd_endpoints=[etcd.endpoint])
    first = NodeProcess(tmp_path / "n1", text).start()
    second = NodeProcess(tmp_path / "n2", text).start()
    try:
        assert put(first, "shared", scrape_config("sj")).status == 201
        assert second.get(CONFIGS).json()["data"]["configs"] == ["shared"]
        assert_error(put(second, "clash", scrape_config("sj")), 400, "failed to check uniqueness")

        etcd.stop()
        resp = first.get(CONFIGS, timeout=30)
        assert_error(resp, 503, "KV store unavailable")
        assert_error(put(first, "during", scrape_config("dj")), 503, "KV store unavailable")
        assert first.get("/-/healthy").status == 200

        etcd.start()
        from tests.helpers.node_process import wait_for

        wait_for(lambda: first.get(CONFIGS).status == 200, 30, what="first node to reconnect to etcd")
        assert put(first, "after", scrape_config("aj")).status == 201
        wait_for(lambda: second.get(CONFIGS).json()["data"]["configs"] == ["after", "shared"], 30,
                 what="second node to see the new config")
    finally:
        first.stop()
        second.stop()
        etcd.stop()


def test_reads_configs_grafana_agent_stored(tmp_path: Path) -> None:
    """Grafana Agent stores gzip-compressed YAML under the same prefix: we read it as it is."""
    import asyncio

    from service.kv.etcd import EtcdKV

    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    try:
        async def seed() -> None:
            kv = EtcdKV([etcd.endpoint])
            await kv.start()
            await kv.put("configurations/legacy", gzip.compress(b"name: legacy\n" + scrape_config("lj").encode()))
            await kv.close()

        asyncio.run(seed())
        proc = NodeProcess(tmp_path / "n", node_config(store="etcd", etcd_endpoints=[etcd.endpoint])).start()
        try:
            assert proc.get(CONFIGS).json()["data"]["configs"] == ["legacy"]
            assert "job_name: lj" in proc.get(f"{CONFIGS}/legacy").json()["data"]["value"]
            assert_error(put(proc, "other", scrape_config("lj")), 400, "failed to check uniqueness")
        finally:
            proc.stop()
    finally:
        etcd.stop()


@pytest.mark.parametrize("name", ["c1\x8fcontrol", "line\u2028sep", "non\ufffechar", "é😀\"\\"])
def test_any_accepted_name_reads_back_from_the_stored_yaml(name: str) -> None:
    """A name JSON leaves raw but YAML may not carry (U+008F, ...) is escaped, so what was stored parses again."""
    import yaml

    from service.configapi.stored import stored_yaml

    stored = stored_yaml("scrape_configs: []\n", name)
    assert yaml.safe_load(stored) == {"name": name, "scrape_configs": []}
