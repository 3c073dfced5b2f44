"""The node file: Grafana Agent static-mode YAML, strict, with the agent's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config.errors import ConfigError
from service.nodecheck import load_node_config
from service.settings import expand_env, parse_node_config

DATA = Path(__file__).parent / "data"


def test_real_world_agent_yaml_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_API_KEY", "glc_secret")
    cfg = load_node_config(str(DATA / "agent.yaml"), expand=True)
    service = cfg.metrics.scraping_service
    assert service.enabled
    assert service.kvstore.store == "etcd"
    assert service.kvstore.etcd.endpoints == ["etcd:2379"]
    assert service.lifecycler.ring.kvstore.prefix == "collectors/"
    assert float(cfg.metrics.global_.scrape_interval) == 60
    assert cfg.metrics.global_.external_labels == {"cluster": "prod-eu-1"}
    assert cfg.metrics.wal_directory == "/var/lib/agent/data"
    assert float(cfg.metrics.wal_cleanup_age) == 24 * 3600
    assert set(cfg.integrations) == {"agent", "node_exporter"}
    assert "logs" not in cfg.unimplemented()  # its file target is tailed
    assert "integrations.node_exporter" in cfg.unimplemented()


def test_defaults_as_the_agent_applies_them() -> None:
    cfg = parse_node_config("metrics:\n  scraping_service:\n    enabled: true\n")
    service = cfg.metrics.scraping_service
    assert float(service.reshard_interval) == 60
    assert float(service.reshard_timeout) == 30
    assert float(service.cluster_reshard_event_timeout) == 30
    assert service.kvstore.prefix == "configurations/"
    assert service.kvstore.store == "embedded"  # ours: no etcd configured
    assert service.dangerous_allow_reading_files is False
    assert float(service.lifecycler.heartbeat_period) == 5
    assert service.lifecycler.ring.kvstore.prefix == "collectors/"
    assert cfg.metrics.wal_directory == "data-agent/"
    assert float(cfg.metrics.global_.scrape_interval) == 60
    assert float(cfg.metrics.global_.scrape_timeout) == 10
    assert (cfg.server.log_level, cfg.server.log_format) == ("info", "logfmt")


def test_etcd_is_chosen_when_endpoints_are_set() -> None:
    cfg = parse_node_config("metrics:\n  scraping_service:\n    enabled: true\n    kvstore:\n"
                            "      etcd:\n        endpoints: [127.0.0.1:2379]\n")
    assert cfg.metrics.scraping_service.kvstore.store == "etcd"


@pytest.mark.parametrize(("text", "message"), [
    ("metrics:\n  wal_directroy: /x\n", "field wal_directroy not found"),
    ("metrics:\n  scraping_service:\n    kvstore:\n      etcd:\n        endpoint: [x]\n", "field endpoint not found"),
    ("bogus_section: {}\n", "field bogus_section not found"),
    ("server:\n  log_level: loud\n", 'unrecognized log level "loud"'),
    ("metrics:\n  scraping_service:\n    enabled: true\n  configs:\n  - name: a\n",
     "cannot use configs when scraping_service mode is enabled"),
    ("metrics:\n  configs:\n  - name: a\n  - name: a\n", "prometheus instance names must be unique"),
    ("metrics:\n  configs:\n  - scrape_configs: []\n", "missing instance name"),
    ("metrics:\n  instance_mode: weird\n", "unsupported instance_mode 'weird'"),
    ("metrics:\n  scraping_service:\n    kvstore:\n      store: etcd\n", "etcd.endpoints is empty"),
    ("server: {}\nserver: {}\n", "already defined"),
    ("metrics:\n  scraping_service:\n    reshard_interval: 0s\n", "reshard_interval must be greater than 0s"),
    ("metrics:\n  configs:\n  - name: a\n    wal_truncate_frequency: 0s\n",
     'failed to apply defaults to "a": wal_truncate_frequency must be greater than 0s'),
    ("metrics:\n  scraping_service:\n    reshard_interval: soon\n", "duration"),
])
def test_invalid_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_node_config(text)
    assert message in str(info.value)


def test_empty_file_is_all_defaults() -> None:
    cfg = parse_node_config("")
    assert not cfg.metrics.scraping_service.enabled


def test_expand_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "1")
    monkeypatch.delenv("MISSING", raising=False)
    assert expand_env("x=${A} y=$A z=${MISSING:-def} w=${MISSING} $$HOME") == "x=1 y=1 z=def w= $HOME"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_node_config(str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in str(info.value) and "No such file" in str(info.value)
