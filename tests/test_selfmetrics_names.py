"""`GET /metrics` names: byte for byte as Grafana Agent, Alloy, Prometheus and Promtail expose them, each listed
in docs/http-api.md with its type, and no `*_created` series."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.metricnames import ExactCounter, exposition
from tests.helpers.node_process import REPO, NodeProcess
from tests.helpers.polling import wait_for

OURS = re.compile(r"^(agent_|prometheus_remote_storage_|loki_|promtail_|logentry_|logs_search_)")


def documented() -> dict[str, str]:
    """name → type from the self metrics table of docs/http-api.md."""
    text = (REPO / "docs" / "http-api.md").read_text()
    section = text[text.index("### Self metrics"):text.index("## Loki push API")]
    out = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 3 and cells[1] in ("counter", "gauge", "histogram"):
            for name in re.findall(r"`([a-z_]+)`", cells[0]):
                out[name] = cells[1]
    return out


def families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def test_exact_counter_keeps_its_name() -> None:
    registry = CollectorRegistry()
    counter = ExactCounter("entries_written", "Entries.", ["tenant"], registry=registry)
    counter.labels("a").inc(2)
    text = exposition(registry).decode()
    assert "# TYPE entries_written counter\n" in text and 'entries_written{tenant="a"} 2.0\n' in text
    assert "_total" not in text and "_created" not in text
    with pytest.raises(ValueError):
        ExactCounter("x_total", "A plain Counter's name.", registry=registry)


@pytest.mark.slow
def test_metrics_names_are_upstreams_and_documented(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", (REPO / "examples" / "agent.yaml").read_text()).start()
    try:
        push = '{"streams":[{"stream":{"container":"web"},"values":[["1764700000000000000","hello"]]}]}'
        assert node.request("POST", "/loki/api/v1/push", push, {"Content-Type": "application/json"}).status == 204
        body = "scrape_configs:\n- job_name: self\n  static_configs: [{targets: ['127.0.0.1:9']}]\n"
        assert node.request("PUT", "/agent/api/v1/config/a", body).status == 201
        wait_for(lambda: 'agent_wal_storage_size_bytes{instance_name="a"}' in node.get("/metrics").text, 30,
                 what="config a's WAL series")
        text = node.get("/metrics").text
    finally:
        node.stop()
    assert not re.search(r"^\S+_created[ {]", text, re.M), "a *_created series is exposed"
    assert not re.search(r"^# TYPE \S+_created ", text, re.M)
    exposed = {n: t for n, t in families(text).items() if OURS.match(n)}
    assert exposed["loki_source_api_entries_written"] == "counter"
    assert re.search(r"^loki_source_api_entries_written 1\.0$", text, re.M)
    assert "loki_source_api_entries_written_total" not in text
    assert exposed["promtail_files_active_total"] == "gauge"
    docs = documented()
    missing = sorted(set(exposed) - set(docs))
    assert not missing, f"exposed but not in docs/http-api.md: {missing}"
    wrong = {n: (t, docs[n]) for n, t in exposed.items() if docs[n] != t}
    assert not wrong, f"type differs from docs/http-api.md: {wrong}"
    assert len(exposed) >= 25  # the unlabelled families at least
    # `instance` is the label every scrape sets to the node's address: a config is named by `instance_name`
    assert not re.search(r'^\S+\{(?:[^}]*,)?instance="', text, re.M), "a series labelled instance= is exposed"
