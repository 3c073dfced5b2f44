"""Secrets never shown: URL passwords (as Prometheus redacts them: `xxxxx`) and masked secret fields, on every
surface a node exposes: the config API, `/-/config`, its log file and the labels of `/metrics`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from service.config.schema import encode, loads
from service.config.secrets import mask_secret_keys, redact_url, url_host
from service.metrics.config import GlobalConfig, InstanceConfig, apply_defaults
from service.metrics.config.render import render_instance
from service.ops.config_dump import render_node_config
from service.settings import parse_node_config
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.ports import free_port

CONFIG = "/agent/api/v1/config/"


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@host:9/api/v1/write", "http://user:xxxxx@host:9/api/v1/write"),
    ("https://user:p@ss@host/a@b", "https://user:xxxxx@host/a@b"),  # Go reads userinfo up to the last `@`
    ("http://:pw@host", "http://:xxxxx@host"),
    ("http://user@host/", "http://user@host/"),  # no password: kept, as Prometheus keeps it
    ("http://host/p?u=a:b@c", "http://host/p?u=a:b@c"),  # `@` in the query is not userinfo
    ('url="http://a:pw@h" other="x@y"', 'url="http://a:xxxxx@h" other="x@y"'),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_host_never_has_userinfo() -> None:
    assert url_host("http://user:pw@loki:3100/loki/api/v1/push") == "loki:3100"


def test_untyped_blocks_masked_by_key() -> None:
    data = {"sigv4": {"region": "eu", "access_key": "AK", "secret_key": "SK"}, "azuread": {"oauth": {
        "client_secret": "CS"}}, "consul": [{"server": "http://u:pw@c:8500", "token": "T"}]}
    assert mask_secret_keys(data) == {
        "sigv4": {"region": "eu", "access_key": "AK", "secret_key": "<secret>"},
        "azuread": {"oauth": {"client_secret": "<secret>"}},
        "consul": [{"server": "http://u:xxxxx@c:8500", "token": "<secret>"}]}


SECRETS = [f"topsecret{i}" for i in range(12)]


def instance_yaml(remote: str, target: str, *, inline_tls: bool = True) -> str:
    """Every kind of secret an instance config can hold, each one distinct so a leak names its field (the
    inline TLS key left out where a node would load it)."""
    tls = f"tls_config: {{cert: CERT, key: {SECRETS[7]}}}" if inline_tls else "tls_config: {}"
    return f"""
scrape_configs:
- job_name: self
  scrape_interval: 1s
  static_configs: [{{targets: ['{target}']}}]
  authorization: {{credentials: {SECRETS[0]}}}
- job_name: sd
  http_sd_configs:
  - url: http://sd:{SECRETS[1]}@{remote}/sd
    basic_auth: {{username: u, password: {SECRETS[2]}}}
remote_write:
- url: http://rw:{SECRETS[3]}@{remote}/api/v1/write
  queue_config: {{min_backoff: 50ms, max_backoff: 100ms}}
  sigv4: {{region: eu-west-1, access_key: AKID, secret_key: {SECRETS[4]}}}
- url: http://{remote}/two
  oauth2:
    client_id: id
    client_secret: {SECRETS[5]}
    token_url: http://tok:{SECRETS[6]}@{remote}/token
  {tls}
- url: http://{remote}/three
  proxy_url: http://proxy:{SECRETS[8]}@{remote}
  bearer_token: {SECRETS[9]}
"""


def test_instance_config_render_shows_no_secret() -> None:
    cfg = loads(InstanceConfig, instance_yaml("127.0.0.1:1", "127.0.0.1:2"))
    cfg.name = "i"
    shown = render_instance(apply_defaults(cfg, GlobalConfig()))
    assert not [s for s in SECRETS if s in shown], shown
    assert "http://rw:xxxxx@127.0.0.1:1/api/v1/write" in shown
    assert encode(cfg, show_secrets=True)["remote_write"][0]["url"].startswith(f"http://rw:{SECRETS[3]}@")


def node_yaml(remote: str, push_port: int) -> str:
    return f"""
server:
  log_level: info
metrics:
  wal_directory: data-agent
  global:
    scrape_interval: 15s
    remote_write:
    - url: http://g:{SECRETS[10]}@{remote}/global
      sigv4: {{region: eu-west-1, access_key: AKID, secret_key: {SECRETS[11]}}}
  scraping_service:
    enabled: true
    kvstore: {{store: embedded}}
logs:
  positions_directory: positions
  configs:
  - name: default
    clients:
    - url: http://loki:{SECRETS[1]}@{remote}/loki/api/v1/push
      batchwait: 50ms
      backoff_config: {{min_period: 50ms, max_period: 100ms, max_retries: 0}}
    scrape_configs:
    - job_name: api
      loki_push_api:
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {push_port}}}
"""


def test_node_config_dump_shows_no_secret() -> None:
    shown = render_node_config(parse_node_config(node_yaml("127.0.0.1:1", 2)))
    assert not [s for s in SECRETS if s in shown], shown
    assert "secret_key: <secret>" in shown
    assert "http://g:xxxxx@127.0.0.1:1/global" in shown


@pytest.mark.slow
def test_no_surface_of_a_running_node_shows_a_secret(tmp_path: Path) -> None:
    """A node whose remote_write, proxy and Loki endpoints refuse connections (a closed loopback port), so
    every sender fails and logs about it: the config API, /-/config, /metrics and the log file are searched
    for every secret."""
    closed = f"127.0.0.1:{free_port()}"
    node = NodeProcess(tmp_path / "node", node_yaml(closed, free_port()),
                       extra_args=["-config.enable-read-api"]).start()
    try:
        put = node.request("PUT", CONFIG + "leaky", instance_yaml(closed, f"127.0.0.1:{node.port}", inline_tls=False))
        assert put.status in (200, 201), put.text
        push = {"streams": [{"stream": {"job": "t"}, "values": [[str(time.time_ns()), "line"]]}]}
        resp = node.request("POST", "/agent/api/v1/logs/instance/default/push", json.dumps(push),
                            {"Content-Type": "application/json"})
        assert resp.status == 204, resp.text

        def failures_logged() -> bool:
            log = node.log()
            return "failed to send batch" in log and "error sending batch" in log

        wait_for(failures_logged, 30, what="remote_write and Loki send failures in the log")
        wait_for(lambda: 'url="http://rw:xxxxx@' in node.get("/metrics").text, 20,
                 what="the remote_write url label")
        surfaces = {
            "config API": node.get("/agent/api/v1/configs/leaky").text,
            "/-/config": node.get("/-/config").text,
            "/metrics": node.get("/metrics").text,
            "log file": node.log(),
        }
        for surface, text in surfaces.items():
            assert "127.0.0.1" in text, f"{surface} is empty: {text}"
            leaked = [s for s in SECRETS if s in text]
            assert not leaked, f"{surface} shows {leaked}"
        assert "http://rw:xxxxx@" in surfaces["config API"]
        assert "secret_key: <secret>" in surfaces["/-/config"]
        assert f'host="{closed}"' in surfaces["/metrics"]  # the Loki client's label: host only
        assert "rw:xxxxx@" in surfaces["log file"]
    finally:
        node.stop()


NODE_SECRETS = [f"nodesecret{i}" for i in range(10)]


def test_every_secret_field_of_the_node_file_is_masked() -> None:
    text = f"""
server:
  http_auth:
    bearer_tokens: [{NODE_SECRETS[0]}]
    basic_auth_users: {{admin: {NODE_SECRETS[1]}}}
metrics:
  wal_directory: data
  scraping_service:
    enabled: true
    kvstore:
      store: etcd
      etcd: {{endpoints: ["127.0.0.1:2379"], username: u, password: {NODE_SECRETS[2]}}}
      consul: {{host: "c:8500", acl_token: {NODE_SECRETS[3]}}}
logs:
  positions_directory: positions
  configs:
  - name: default
    clients:
    - url: http://loki:3100/loki/api/v1/push
      basic_auth: {{username: u, password: {NODE_SECRETS[4]}}}
      tls_config: {{cert: CERT, key: {NODE_SECRETS[5]}}}
      proxy_url: http://p:{NODE_SECRETS[6]}@proxy:3128
      proxy_connect_header: {{Proxy-Authorization: [{NODE_SECRETS[7]}]}}
    - url: http://loki:3100/two
      oauth2: {{client_id: id, client_secret: {NODE_SECRETS[8]}, token_url: "http://t/token"}}
integrations:
  mysqld_exporter: {{enabled: true, data_source_name: "mysql://root:{NODE_SECRETS[9]}@tcp(db:3306)/"}}
"""
    shown = render_node_config(parse_node_config(text))
    assert not [s for s in NODE_SECRETS if s in shown], shown
    assert "http://p:xxxxx@proxy:3128" in shown
