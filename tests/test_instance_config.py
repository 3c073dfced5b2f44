"""Metrics instance configs: strict parsing, Prometheus' checks, the agent's apply_defaults, the no-files
rule and the YAML shown back."""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

from service.config.errors import ConfigError
from service.config.schema import encode
from service.metrics.config import (
    GlobalConfig,
    InstanceConfig,
    apply_defaults,
    check_reading_files,
    job_names,
    parse_instance,
    render_instance,
)
from service.metrics.config.scrape import parse_byte_size


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, name: str = "cfg") -> InstanceConfig:
    return parse_instance(y(text), name)


def defaults(text: str, global_cfg: GlobalConfig | None = None) -> InstanceConfig:
    return apply_defaults(parse(text), global_cfg or GlobalConfig())


# ------------------------------------------------------------------------------------------- parsing errors

PARSE_ERRORS = [
    ("empty body", "", "EOF"),
    ("unknown top field", "foo: 1\n",
     "yaml: unmarshal errors:\n  line 1: field foo not found in type instance.plain"),
    ("unknown scrape field", """
        scrape_configs:
        - job_name: a
          bogus: 1
        """, "line 3: field bogus not found in type config.ScrapeConfig"),
    ("unknown nested field", """
        remote_write:
        - url: http://x
          queue_config:
            capacityy: 1
        """, "line 4: field capacityy not found in type config.QueueConfig"),
    ("unknown sd field", """
        scrape_configs:
        - job_name: a
          static_configs:
          - targets: [a]
            extra: 1
        """, "line 5: field extra not found"),
    ("unknown sd key", """
        scrape_configs:
        - job_name: a
          foo_sd_configs: [{}]
        """, "field foo_sd_configs not found"),
    ("wrong type int", """
        scrape_configs:
        - job_name: a
          sample_limit: lots
        """, "line 3: cannot unmarshal !!str `lots` into int"),
    ("wrong type bool", "host_filter: maybe\n", "cannot unmarshal !!str `maybe` into bool"),
    ("wrong type list", "scrape_configs: {a: 1}\n", "cannot unmarshal !!map into []config.ScrapeConfig"),
    ("bad duration", "wal_truncate_frequency: soon\n", 'time: invalid duration "soon"'),
    ("empty duration", "max_wal_time: ''\n", 'time: invalid duration ""'),
    ("duplicate key", "host_filter: true\nhost_filter: false\n", "already defined at line 1"),
    ("duplicate nested key", """
        remote_write:
        - url: http://a
          url: http://b
        """, "already defined"),
    ("job_name empty", "scrape_configs:\n- {}\n", "job_name is empty"),
    ("url empty", "remote_write:\n- {}\n", "url for remote_write is empty"),
    ("bearer both", """
        scrape_configs:
        - job_name: a
          bearer_token: t
          bearer_token_file: /f
        """, "at most one of bearer_token & bearer_token_file must be configured"),
    ("basic and bearer", """
        remote_write:
        - url: http://x
          basic_auth: {username: u, password: p}
          bearer_token: t
        """, "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"),
    ("password both", """
        remote_write:
        - url: http://x
          basic_auth: {username: u, password: p, password_file: /f}
        """, "at most one of basic_auth password & password_file must be configured"),
    ("authorization and bearer", """
        scrape_configs:
        - job_name: a
          authorization: {credentials: c}
          bearer_token: t
        """, "authorization is not compatible with bearer_token & bearer_token_file"),
    ("authorization basic", """
        scrape_configs:
        - job_name: a
          authorization: {type: Basic, credentials: c}
        """, 'authorization type cannot be set to "basic", use "basic_auth" instead'),
    ("authorization and basic_auth", """
        scrape_configs:
        - job_name: a
          authorization: {credentials: c}
          basic_auth: {username: u}
        """, "at most one of basic_auth, oauth2 & authorization must be configured"),
    ("oauth2 no client id", """
        scrape_configs:
        - job_name: a
          oauth2: {client_secret: s, token_url: http://t}
        """, "oauth2 client_id must be configured"),
    ("oauth2 no secret", """
        scrape_configs:
        - job_name: a
          oauth2: {client_id: i, token_url: http://t}
        """, "either oauth2 client_secret or client_secret_file must be configured"),
    ("oauth2 no token url", """
        scrape_configs:
        - job_name: a
          oauth2: {client_id: i, client_secret: s}
        """, "oauth2 token_url must be configured"),
    ("no_proxy alone", """
        scrape_configs:
        - job_name: a
          no_proxy: localhost
        """, "if no_proxy is configured, proxy_url must also be configured"),
    ("proxy header alone", """
        scrape_configs:
        - job_name: a
          proxy_connect_header: {X: [v]}
        """, "if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be "
            "configured"),
    ("tls version", """
        scrape_configs:
        - job_name: a
          tls_config: {min_version: TLS9}
        """, "unknown TLS version: TLS9"),
    ("tls cert without key", """
        scrape_configs:
        - job_name: a
          tls_config: {cert: abc}
        """, "exactly one of key or key_file must be configured when a client certificate is configured"),
    ("scheme", """
        scrape_configs:
        - job_name: a
          scheme: ftp
        """, 'scheme must be "http" or "https" for scrape config with job name "a"'),
    ("url in static target", """
        scrape_configs:
        - job_name: a
          static_configs: [{targets: ["http://x:9100/metrics"]}]
        """, '"http://x:9100/metrics" is not a valid hostname'),
    ("bad label name", """
        scrape_configs:
        - job_name: a
          static_configs: [{targets: [x], labels: {"a-b": v}}]
        """, '"a-b" is not a valid label name'),
    ("null relabel", """
        scrape_configs:
        - job_name: a
          relabel_configs: [~]
        """, "empty or null target relabeling rule in scrape config"),
    ("null metric relabel", """
        scrape_configs:
        - job_name: a
          metric_relabel_configs: [~]
        """, "empty or null metric relabeling rule in scrape config"),
    ("bad relabel action", """
        scrape_configs:
        - job_name: a
          relabel_configs: [{action: explode}]
        """, 'unknown relabel action "explode"'),
    ("null sd entry", """
        scrape_configs:
        - job_name: a
          kubernetes_sd_configs: [~]
        """, "empty or null section in kubernetes_sd_configs"),
    ("dns without names", """
        scrape_configs:
        - job_name: a
          dns_sd_configs: [{type: A}]
        """, "DNS-SD config must contain at least one SRV record name"),
    ("dns A without port", """
        scrape_configs:
        - job_name: a
          dns_sd_configs: [{names: [x], type: A}]
        """, "a port is required in DNS-SD configs for all record types except SRV"),
    ("dns bad type", """
        scrape_configs:
        - job_name: a
          dns_sd_configs: [{names: [x], type: TXT}]
        """, "invalid DNS-SD records type TXT"),
    ("file sd empty", """
        scrape_configs:
        - job_name: a
          file_sd_configs: [{refresh_interval: 1m}]
        """, "file service discovery config must contain at least one path name"),
    ("file sd bad name", """
        scrape_configs:
        - job_name: a
          file_sd_configs: [{files: [targets.txt]}]
        """, 'path name "targets.txt" is not valid for file discovery'),
    ("http sd no url", """
        scrape_configs:
        - job_name: a
          http_sd_configs: [{refresh_interval: 1m}]
        """, "URL is missing"),
    ("http sd scheme", """
        scrape_configs:
        - job_name: a
          http_sd_configs: [{url: "ftp://x/sd"}]
        """, "URL scheme must be 'http' or 'https'"),
    ("reserved header", """
        remote_write:
        - url: http://x
          headers: {User-Agent: me}
        """, "User-Agent is a reserved header. It must not be changed"),
    ("authorization header", """
        remote_write:
        - url: http://x
          headers: {Authorization: x}
        """, "authorization header must be changed via the basic_auth, authorization, oauth2, sigv4, or "
            "azuread"),
    ("sigv4 and basic auth", """
        remote_write:
        - url: http://x
          basic_auth: {username: u}
          sigv4: {region: eu-west-1}
        """, "at most one of basic_auth, authorization, oauth2, & sigv4 must be configured"),
    ("null write relabel", """
        remote_write:
        - url: http://x
          write_relabel_configs: [~]
        """, "empty or null relabeling rule in remote write config"),
    ("bad port", """
        remote_write:
        - url: "http://x:port/push"
        """, 'parse "http://x:port/push": invalid port ":port" after host'),
    ("body size", """
        scrape_configs:
        - job_name: a
          body_size_limit: 10parsecs
        """, "units: unknown unit in 10parsecs"),
    ("negative limit", """
        scrape_configs:
        - job_name: a
          sample_limit: -1
        """, "cannot unmarshal !!int `-1` into uint"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in PARSE_ERRORS],
                         ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(body)
    assert message in str(exc.value)


def test_unknown_top_field_is_exactly_go_text() -> None:
    with pytest.raises(ConfigError) as exc:
        parse("foo: 1\n")
    assert str(exc.value) == "yaml: unmarshal errors:\n  line 1: field foo not found in type instance.plain"


def test_body_name_is_replaced_by_url_name() -> None:
    cfg = parse("name: other\n", name="from-url")
    assert cfg.name == "from-url"


# --------------------------------------------------------------------------------------- apply_defaults

DEFAULT_ERRORS = [
    ("wal truncate zero", "wal_truncate_frequency: 0s\n", "wal_truncate_frequency must be greater than 0s"),
    ("flush deadline zero", "remote_flush_deadline: 0s\n", "remote_flush_deadline must be greater than 0s"),
    ("min over max", "min_wal_time: 5h\nmax_wal_time: 1h\n", "min_wal_time must be less than max_wal_time"),
    ("null scrape config", "scrape_configs: [~]\n", "empty or null scrape config section"),
    ("timeout over interval", """
        scrape_configs:
        - {job_name: a, scrape_interval: 5s, scrape_timeout: 6s}
        """, 'scrape timeout greater than scrape interval for scrape config with job name "a"'),
    ("timeout over inherited interval", """
        scrape_configs:
        - {job_name: a, scrape_timeout: 2m}
        """, 'scrape timeout greater than scrape interval for scrape config with job name "a"'),
    ("interval over truncate", """
        wal_truncate_frequency: 1m
        scrape_configs:
        - {job_name: a, scrape_interval: 2m}
        """, 'scrape interval greater than wal_truncate_frequency for scrape config with job name "a"'),
    ("duplicate job", """
        scrape_configs:
        - {job_name: a}
        - {job_name: a}
        """, 'found multiple scrape configs with job name "a"'),
    ("null remote write", "remote_write: [~]\n", "empty or null remote write config section"),
    ("identical unnamed remote writes", """
        remote_write:
        - url: http://x
        - url: http://x
        """, "found two identical remote_write configs"),
    ("duplicate remote write names", """
        remote_write:
        - {url: http://x, name: rw}
        - {url: http://y, name: rw}
        """, 'found duplicate remote write configs with name "rw"'),
    # Order: the first failing check wins.
    ("wal check before scrape checks", """
        wal_truncate_frequency: 0s
        scrape_configs: [~]
        """, "wal_truncate_frequency must be greater than 0s"),
    ("scrape checks before remote_write", """
        scrape_configs: [~]
        remote_write: [~]
        """, "empty or null scrape config section"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in DEFAULT_ERRORS],
                         ids=[c[0] for c in DEFAULT_ERRORS])
def test_apply_defaults_errors(body: str, message: str) -> None:
    cfg = parse(body)
    with pytest.raises(ConfigError) as exc:
        apply_defaults(cfg, GlobalConfig())
    assert str(exc.value) == message


def test_missing_instance_name() -> None:
    with pytest.raises(ConfigError, match=r"^missing instance name$"):
        apply_defaults(InstanceConfig(), GlobalConfig())


def test_defaults_of_an_empty_config() -> None:
    cfg = defaults("{}\n")
    assert cfg.wal_truncate_frequency == 3600
    assert cfg.min_wal_time == 300 and cfg.max_wal_time == 4 * 3600
    assert cfg.remote_flush_deadline == 60
    assert cfg.host_filter is False and cfg.write_stale_on_shutdown is False
    assert cfg.scrape_configs == [] and cfg.remote_write == []


def test_scrape_and_remote_write_defaults() -> None:
    cfg = defaults("""
        scrape_configs:
        - job_name: a
        remote_write:
        - url: http://x/push
        """)
    sc = cfg.scrape_configs[0]
    assert (sc.scrape_interval, sc.scrape_timeout) == (60, 10)
    assert sc.metrics_path == "/metrics" and sc.scheme == "http"
    assert sc.honor_timestamps is True and sc.honor_labels is False
    assert sc.follow_redirects is True and sc.enable_http2 is True
    rw = cfg.remote_write[0]
    assert rw.remote_timeout == 30
    assert rw.send_exemplars is True
    q = rw.queue_config
    assert (q.capacity, q.max_shards, q.min_shards, q.max_samples_per_send) == (10000, 50, 1, 2000)
    assert (q.batch_send_deadline, q.min_backoff, q.max_backoff) == (5, 0.03, 5)
    assert q.retry_on_http_429 is True
    m = rw.metadata_config
    assert (m.send, m.send_interval, m.max_samples_per_send) == (True, 60, 2000)


def test_partial_queue_config_keeps_other_defaults() -> None:
    cfg = defaults("""
        remote_write:
        - url: http://x
          queue_config: {max_shards: 7, retry_on_http_429: false}
        """)
    q = cfg.remote_write[0].queue_config
    assert (q.max_shards, q.capacity, q.retry_on_http_429) == (7, 10000, False)


@pytest.mark.parametrize(("interval", "timeout", "global_interval", "global_timeout", "want"), [
    (None, None, "1m", "10s", (60, 10)),
    ("5s", None, "1m", "10s", (5, 5)),          # timeout = min(global timeout, interval)
    (None, None, "30s", "20s", (30, 20)),       # both from global
    ("2m", "1m", "1m", "10s", (120, 60)),       # explicit values stay
    (None, None, "15s", None, (15, 10)),        # global timeout resolves to min(10s, interval)
    (None, None, "5s", None, (5, 5)),
])
def test_interval_and_timeout_inheritance(interval, timeout, global_interval, global_timeout, want) -> None:
    job = {"job_name": "a"}
    if interval:
        job["scrape_interval"] = interval
    if timeout:
        job["scrape_timeout"] = timeout
    glob = {"scrape_interval": global_interval}
    if global_timeout:
        glob["scrape_timeout"] = global_timeout
    from service.config.schema import loads
    global_cfg = loads(GlobalConfig, json.dumps(glob))
    cfg = apply_defaults(parse_instance(json.dumps({"scrape_configs": [job]}), "c"), global_cfg)
    sc = cfg.scrape_configs[0]
    assert (sc.scrape_interval, sc.scrape_timeout) == want


def test_global_timeout_over_interval_is_an_error() -> None:
    from service.config.schema import loads
    with pytest.raises(ConfigError, match="global scrape timeout greater than scrape interval"):
        loads(GlobalConfig, "scrape_interval: 5s\nscrape_timeout: 6s\n")


def test_apply_defaults_does_not_change_the_input() -> None:
    cfg = parse("scrape_configs:\n- job_name: a\nremote_write:\n- url: http://x\n")
    apply_defaults(cfg, GlobalConfig())
    assert cfg.scrape_configs[0].scrape_interval is None
    assert cfg.remote_write[0].name == ""


def test_unnamed_remote_write_gets_instance_hash_name() -> None:
    cfg = parse("remote_write:\n- url: http://x/push\n- {url: http://y/push, name: mine}\n", name="inst")
    out = apply_defaults(cfg, GlobalConfig())
    entry = encode(cfg.remote_write[0], show_secrets=True)
    digest = hashlib.md5(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert out.remote_write[0].name == f"inst-{digest[:6]}"
    assert out.remote_write[1].name == "mine"
    # Stable across calls, different for a different entry.
    assert apply_defaults(cfg, GlobalConfig()).remote_write[0].name == out.remote_write[0].name
    other = apply_defaults(parse("remote_write:\n- url: http://z/push\n", name="inst"), GlobalConfig())
    assert other.remote_write[0].name != out.remote_write[0].name


def test_global_remote_write_inherited_and_external_labels_stay_global() -> None:
    from service.config.schema import loads
    global_cfg = loads(GlobalConfig, y("""
        external_labels: {cluster: eu1}
        remote_write:
        - url: http://global/push
        """))
    cfg = apply_defaults(parse("scrape_configs:\n- job_name: a\n", name="one"), global_cfg)
    assert [rw.url for rw in cfg.remote_write] == ["http://global/push"]
    assert cfg.remote_write[0].name.startswith("one-")
    assert global_cfg.remote_write[0].name == ""  # the global block is not modified
    assert "cluster" not in render_instance(cfg)
    own = apply_defaults(parse("remote_write:\n- url: http://own\n"), global_cfg)
    assert [rw.url for rw in own.remote_write] == ["http://own"]


def test_job_names() -> None:
    assert job_names(parse("scrape_configs:\n- job_name: a\n- job_name: b\n")) == {"a", "b"}
    assert job_names(parse("{}\n")) == set()


def test_body_size_limit() -> None:
    assert parse_byte_size("10MB") == 10 * 1024 * 1024
    assert parse_byte_size("1KiB") == 1024
    assert parse_byte_size("500") == 500
    sc = parse("scrape_configs:\n- {job_name: a, body_size_limit: 2GB}\n").scrape_configs[0]
    assert sc.body_size_limit.bytes == 2 * 1024**3


# ---------------------------------------------------------------------------------------- reading files

_HTTP_FILE_FIELDS = [
    ("bearer_token_file", "bearer_token_file: /f"),
    ("password_file", "basic_auth: {username: u, password_file: /f}"),
    ("credentials_file", "authorization: {credentials_file: /f}"),
    ("ca_file", "tls_config: {ca_file: /f}"),
    ("cert_file", "tls_config: {cert_file: /f, key: k}"),
    ("key_file", "tls_config: {cert: c, key_file: /f}"),
    ("oauth2.client_secret_file", "oauth2: {client_id: i, client_secret_file: /f, token_url: http://t}"),
    ("oauth2.tls_config.ca_file",
     "oauth2: {client_id: i, client_secret: s, token_url: http://t, tls_config: {ca_file: /f}}"),
]
_MSG = "{} must be empty unless dangerous_allow_reading_files is set"
SD00 = "failed to validate service discovery at index 0 within scrape_config at index 0: "


def _check(body: str, global_cfg: GlobalConfig | None = None) -> str:
    cfg = apply_defaults(parse(body), global_cfg or GlobalConfig())
    with pytest.raises(ConfigError) as exc:
        check_reading_files(cfg)
    return str(exc.value)


@pytest.mark.parametrize(("field", "snippet"), _HTTP_FILE_FIELDS, ids=[f for f, _ in _HTTP_FILE_FIELDS])
def test_reading_files_in_remote_write(field: str, snippet: str) -> None:
    body = f"remote_write:\n- url: http://ok\n- url: http://x\n  {snippet}\n"
    assert _check(body) == "failed to validate remote_write at index 1: " + _MSG.format(field)


@pytest.mark.parametrize(("field", "snippet"), _HTTP_FILE_FIELDS, ids=[f for f, _ in _HTTP_FILE_FIELDS])
def test_reading_files_in_scrape_config(field: str, snippet: str) -> None:
    body = f"scrape_configs:\n- job_name: ok\n- job_name: b\n  {snippet}\n"
    assert _check(body) == "failed to validate scrape_config at index 1: " + _MSG.format(field)


@pytest.mark.parametrize(("field", "snippet"), _HTTP_FILE_FIELDS, ids=[f for f, _ in _HTTP_FILE_FIELDS])
def test_reading_files_in_http_sd(field: str, snippet: str) -> None:
    body = f"scrape_configs:\n- job_name: a\n  http_sd_configs:\n  - url: http://sd\n    {snippet}\n"
    assert _check(body) == (SD00 + _MSG.format(field))


@pytest.mark.parametrize(("field", "snippet"), _HTTP_FILE_FIELDS, ids=[f for f, _ in _HTTP_FILE_FIELDS])
def test_reading_files_in_opaque_sd(field: str, snippet: str) -> None:
    body = (f"scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n"
            f"    api_server: http://127.0.0.1:1\n    {snippet}\n")
    assert _check(body) == (SD00 + _MSG.format(field))


def test_remote_write_checked_before_scrape_configs() -> None:
    body = ("scrape_configs:\n- {job_name: a, bearer_token_file: /s}\n"
            "remote_write:\n- {url: http://x, bearer_token_file: /r}\n")
    assert _check(body).startswith("failed to validate remote_write at index 0")


def test_first_field_in_agent_order_is_named() -> None:
    body = ("remote_write:\n- url: http://x\n  tls_config: {ca_file: /ca}\n"
            "  basic_auth: {username: u, password_file: /p}\n")
    assert _check(body).endswith(_MSG.format("password_file"))


def test_inherited_global_remote_write_is_checked() -> None:
    from service.config.schema import loads
    global_cfg = loads(GlobalConfig, "remote_write:\n- {url: http://g, bearer_token_file: /t}\n")
    assert _check("scrape_configs:\n- job_name: a\n", global_cfg) == (
        "failed to validate remote_write at index 0: " + _MSG.format("bearer_token_file"))


@pytest.mark.parametrize(("sd", "message"), [
    ("file_sd_configs: [{files: [t.json]}]", _MSG.format("file_sd_configs")),
    ("consul_sd_configs: [{tls_config: {key_file: /k}}]", _MSG.format("key_file")),
    ("openstack_sd_configs: [{role: instance, region: r, tls_config: {cert_file: /c}}]",
     _MSG.format("cert_file")),
    ("marathon_sd_configs: [{servers: [x], auth_token_file: /t}]", _MSG.format("auth_token_file")),
    ("kubernetes_sd_configs: [{role: pod, kubeconfig_file: /k}]", _MSG.format("kubeconfig_file")),
    ("docker_sd_configs: [{host: unix:///var/run/docker.sock}]",
     "unknown service discovery docker; rejecting config for safety. "
     "set dangerous_allow_reading_files to ignore"),
    ("nomad_sd_configs: [{server: http://n}]", "unknown service discovery nomad; rejecting config"),
    ("puppetdb_sd_configs: [{url: http://p, query: resources}]", "unknown service discovery puppetdb;"),
])
def test_reading_files_in_discovery(sd: str, message: str) -> None:
    body = f"scrape_configs:\n- job_name: a\n  {sd}\n"
    assert message in _check(body)
    assert "service discovery at index 0 within scrape_config at index 0" in _check(body)


def test_discovery_index_follows_prometheus_flattened_order() -> None:
    # Keys sorted (dns < file < kubernetes), entries in order, static_configs coalesced last.
    body = y("""
        scrape_configs:
        - job_name: ok
        - job_name: a
          static_configs: [{targets: [x]}, {targets: [y]}]
          kubernetes_sd_configs: [{role: pod}, {role: node}]
          dns_sd_configs: [{names: [a]}]
          file_sd_configs: [{files: [t.json]}]
        """)
    assert _check(body) == ("failed to validate service discovery at index 1 within scrape_config at "
                            "index 1: " + _MSG.format("file_sd_configs"))
    body2 = body.replace("file_sd_configs: [{files: [t.json]}]",
                         "uyuni_sd_configs: [{server: http://u, username: u, password: p}]")
    assert _check(body2).startswith("failed to validate service discovery at index 3 within scrape_config "
                                    "at index 1: unknown service discovery uyuni")


def test_safe_config_with_vetted_sds_passes() -> None:
    cfg = defaults("""
        scrape_configs:
        - job_name: a
          static_configs: [{targets: [localhost:9100]}]
          dns_sd_configs: [{names: [_x._tcp.example.org]}]
          ec2_sd_configs: [{region: eu-west-1}]
          consul_sd_configs: [{}]
          kubernetes_sd_configs: [{role: pod}]
          http_sd_configs: [{url: http://sd/targets}]
          basic_auth: {username: u, password: p}
          tls_config: {ca: "PEM", insecure_skip_verify: true}
        remote_write:
        - url: http://x
          authorization: {credentials: c}
        """)
    check_reading_files(cfg)


# --------------------------------------------------------------------------------------------- rendering

REALISTIC = """
name: ignored
host_filter: false
wal_truncate_frequency: 30m
scrape_configs:
- job_name: node
  scrape_interval: 15s
  static_configs:
  - targets: [node1:9100, node2:9100]
    labels: {env: prod}
  relabel_configs:
  - source_labels: [__address__]
    regex: "([^:]+):.*"
    target_label: host
    replacement: "$1"
  - action: labeldrop
    regex: tmp_.*
  metric_relabel_configs:
  - source_labels: [__name__]
    regex: go_.*
    action: drop
- job_name: api
  scheme: https
  metrics_path: /internal/metrics
  params: {format: [prometheus]}
  body_size_limit: 10MB
  sample_limit: 5000
  authorization: {credentials: very-secret-token}
  tls_config: {server_name: api.internal, insecure_skip_verify: true}
  dns_sd_configs:
  - names: [api.internal]
    type: A
    port: 8443
  kubernetes_sd_configs:
  - role: pod
    api_server: https://kubernetes.default.svc
    basic_auth: {username: k, password: kube-pass}
- job_name: discovered
  http_sd_configs:
  - url: http://sd.internal/targets
    refresh_interval: 2m
remote_write:
- url: https://metrics.example.com/api/v1/push
  remote_timeout: 10s
  headers: {X-Scope-OrgID: tenant-1}
  basic_auth: {username: "12345", password: rw-password}
  write_relabel_configs:
  - source_labels: [__name__]
    regex: expensive_.*
    action: drop
  queue_config:
    capacity: 20000
    max_shards: 10
    max_samples_per_send: 5000
    batch_send_deadline: 10s
- name: backup
  url: http://backup:9090/api/v1/write
  oauth2: {client_id: c, client_secret: oauth-secret, token_url: https://auth/token, scopes: [write]}
- name: aws
  url: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write
  sigv4: {region: eu-west-1, access_key: AKIA, secret_key: sigv4-secret}
"""


def test_realistic_config_round_trips() -> None:
    first = render_instance(apply_defaults(parse(REALISTIC, name="team-a"), GlobalConfig()))
    again = render_instance(apply_defaults(parse_instance(first, "team-a"), GlobalConfig()))
    assert again == first
    assert "name: team-a\n" in first
    for secret in ("very-secret-token", "kube-pass", "rw-password", "oauth-secret", "sigv4-secret"):
        assert secret not in first
    assert first.count("<secret>") == 5
    assert "scrape_timeout: 10s" in first and "scrape_interval: 1m" in first
    assert "capacity: 20000" in first and "min_shards: 1" in first
    assert "body_size_limit: 10MB" in first
    assert "name: team-a-" in first and "name: backup" in first and "name: aws" in first


@pytest.mark.parametrize("snippet", [
    "bearer_token: tok-secret",
    "basic_auth: {username: u, password: tok-secret}",
    "authorization: {credentials: tok-secret}",
    "oauth2: {client_id: i, client_secret: tok-secret, token_url: http://t}",
    "tls_config: {cert: c, key: tok-secret}",
    "proxy_url: http://proxy:3128\n  proxy_connect_header: {Proxy-Auth: [tok-secret]}",
])
def test_secrets_are_masked(snippet: str) -> None:
    bodies = (f"scrape_configs:\n- job_name: a\n  {snippet}\n",
              f"remote_write:\n- url: http://x\n  {snippet}\n")
    for body in bodies:
        cfg = parse(body)
        text = render_instance(cfg)
        assert "tok-secret" not in text
        assert "<secret>" in text
        assert "tok-secret" in json.dumps(encode(cfg, show_secrets=True))


def test_render_leaves_out_go_omitempty_zero_values() -> None:
    text = render_instance(defaults("scrape_configs:\n- job_name: a\n"))
    for key in ("sample_limit", "honor_labels", "host_filter", "write_stale_on_shutdown", "target_limit"):
        assert key not in text
    assert "honor_timestamps: true" in text and "follow_redirects: true" in text
    assert "wal_truncate_frequency: 1h0m0s" in text
