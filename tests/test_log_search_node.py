"""Log search through a real node: pushed (JSON and protobuf) and tailed entries are found by the API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from tests.helpers.logs_node import logs_node_yaml, proto_body
from tests.helpers.node_process import NodeProcess, wait_for


def node_yaml(log_dir: Path) -> str:
    return logs_node_yaml(search="{retention: 30d}", instance_extra="target_config: {sync_period: 200ms}",
                          scrape_configs=f"""
- job_name: files
  static_configs:
  - targets: [localhost]
    labels: {{job: files, container: tailer, __path__: {log_dir}/*.log}}
""")


def search(node: NodeProcess, **params: str):
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    resp = node.get(f"/api/logs/search?{query}")
    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["success"] is True
    return body["data"]


def test_pushed_and_tailed_entries_are_searchable(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / "app.log").write_text("tailed line about checkout timeout\n")
    node = NodeProcess(tmp_path / "node", node_yaml(log_dir)).start()
    try:
        now_ns = time.time_ns()
        json_body = {"streams": [{"stream": {"container": "nginx", "stream": "stderr"},
                                  "values": [[str(now_ns + i), f"GET /api error upstream {i}"] for i in range(300)]}]}
        resp = node.request("POST", "/loki/api/v1/push", json.dumps(json_body),
                            {"Content-Type": "application/json"})
        assert resp.status == 204, resp.text
        resp = node.request("POST", "/loki/api/v1/push",
                            proto_body([('{container="api", stream="stdout"}', ["payment accepted"] * 200)],
                                       ts=int(time.time())),  # inside the 30d retention
                            {"Content-Type": "application/x-protobuf"})
        assert resp.status == 204, resp.text

        wait_for(lambda: search(node)["total"] == 501, 60, what="all entries in the store")
        assert search(node, container="nginx")["total"] == 300
        assert search(node, container="api", query="payment")["total"] == 200
        assert search(node, query="upstr", stream="stderr")["total"] == 300  # prefix match
        tailed = search(node, container="tailer")
        assert tailed["total"] == 1 and tailed["logs"][0]["message"] == "tailed line about checkout timeout"
        page = search(node, container="nginx", limit="100", offset="100")
        assert page["returned"] == 100 and page["total"] == 300

        containers = node.get("/api/logs/containers").json()["data"]
        assert {c["name"]: c["count"] for c in containers} == {"nginx": 300, "api": 200, "tailer": 1}
        bad = node.get("/api/logs/search?limit=1000")
        assert bad.status == 400 and bad.json()["code"] == "INVALID_PARAMETER" and "limit" in bad.json()["error"]

        chat = node.request("POST", "/api/chat",
                            json.dumps({"messages": [{"role": "user", "content": "which container logs the most"}]}),
                            {"Content-Type": "application/json"})
        assert chat.status == 200, chat.text
        assert "nginx" in json.dumps(chat.json()["data"])
        status = node.get("/api/status").json()
        assert status["success"] is True and status["data"]["store"]["running"] is True
    finally:
        node.stop()
