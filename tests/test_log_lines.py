"""Log lines: fields as a user reads them, `component=` on every line, repeated warnings counted."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from pathlib import Path

import pytest

from service import log
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, node_config
from tests.helpers.polling import wait_for


def _capture() -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log.LogfmtFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return out, handler


def test_values_are_not_python_reprs_and_every_line_has_a_component() -> None:
    out, handler = _capture()
    try:
        log.get_logger("configapi").info("config stored", config="a", created=True, position=None,
                                         jobs=["a", "b"])
        logging.getLogger("uvicorn.error").warning("something from uvicorn")
        logging.getLogger("service.wal").warning("from a stdlib logger", extra={"segment": 3})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert "component=configapi config=a created=true jobs=\"[\\\"a\\\",\\\"b\\\"]\"" in lines[0]
    assert "position" not in lines[0] and "None" not in lines[0] and "True" not in lines[0]
    assert "component=server" in lines[1]
    assert "component=wal segment=3" in lines[2]


def test_repeated_warning_counts_instead_of_repeating() -> None:
    out, handler = _capture()
    now = [1000.0]
    warn = log.RepeatedWarning(log.get_logger("remote_write", url="http://127.0.0.1:9"),
                               "remote down, retrying", clock=lambda: now[0])
    try:
        assert warn.failed(err="connection refused")  # the first one at once
        for _ in range(16):
            now[0] += 3.5
            assert not warn.failed(err="connection refused")
        now[0] += 4.5  # 60.5 s after the first line
        assert warn.failed(err="connection refused")
        assert warn.recovered("remote reachable again")
        assert not warn.recovered("remote reachable again")  # once
        stdlib = log.RepeatedWarning(logging.getLogger("service.metrics.remote.queue"), "remote_write failing")
        stdlib.failed(component="remote_write", url="http://127.0.0.1:9")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert 'msg="remote down, retrying; 1 failure in the last minute"' in lines[0]
    assert "failures=17" in lines[1] and 'msg="remote down, retrying; 17 failures in the last minute"' in lines[1]
    assert "component=remote_write url=http://127.0.0.1:9" in lines[1] and "err=\"connection refused\"" in lines[1]
    assert "level=info" in lines[2] and "failures=18" in lines[2]
    assert "component=remote_write" in lines[3] and "1 failure in the last minute" in lines[3]


def test_a_bad_certificate_path_names_the_file() -> None:
    """The client side (remote_write, scrape, Loki clients): the error that is logged names the file."""
    from service.config.http_client import TLSConfig
    from service.http.client import HTTPClientError, ssl_context

    with pytest.raises(HTTPClientError, match=r"unable to load ca_file /nope/ca\.pem: "):
        ssl_context(TLSConfig(ca_file="/nope/ca.pem"))
    with pytest.raises(HTTPClientError, match=r"unable to load client certificate /nope/c.pem \(key /nope/k.pem\)"):
        ssl_context(TLSConfig(cert_file="/nope/c.pem", key_file="/nope/k.pem"))


@pytest.mark.slow
def test_etcd_outage_and_recovery_are_logged_once_each(tmp_path: Path) -> None:
    """A real etcd stopped for a few heartbeats, then started again on the same port."""
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    text = node_config(store="etcd", etcd_endpoints=[server.endpoint]).replace(
        "  scraping_service:\n", "  scraping_service:\n    lifecycler: {heartbeat_period: 1s, lease_ttl: 30s}\n")
    node = NodeProcess(tmp_path / "node", text).start()
    try:
        server.stop()
        wait_for(lambda: "heartbeat failed: KV store unreachable, retrying; 1 failure in the last minute"
                 in node.log(), 20, what="the first heartbeat failure")
        wait_for(lambda: node.log().count("heartbeat failed") == 1 and "failures=1" in node.log(), 5)
        server.start()
        wait_for(lambda: "KV store reachable again: heartbeat sent" in node.log(), 30, what="the recovery line")
        line = next(ln for ln in node.log().splitlines() if "KV store reachable again: heartbeat sent" in ln)
        assert "level=info component=cluster.membership" in line and re.search(r"failures=\d+", line)
        assert node.log().count("heartbeat failed") == 1  # counted, not repeated every second
    finally:
        node.stop()
        server.remove()


def test_reshard_timeout_names_what_it_waited_for() -> None:
    """An instance whose start hangs: the reshard times out and says it waited for instances."""
    from service.cluster.cluster import Cluster
    from service.cluster.membership import State
    from service.configapi.store import encode_value
    from service.kv.memory import MemoryKV
    from service.metrics.config import GlobalConfig, InstanceConfig
    from service.metrics.manager import InstanceManager
    from service.settings import parse_node_config

    class Stuck:
        def __init__(self, cfg: InstanceConfig) -> None:
            self.name, self.cfg = cfg.name, cfg

        async def start(self) -> None:
            await asyncio.sleep(3)

        async def stop(self) -> None:
            pass

    async def scenario() -> str:
        kv = MemoryKV()
        await kv.start()
        await kv.put("configurations/a", encode_value("scrape_configs: []\n"))
        service = parse_node_config("metrics:\n  scraping_service:\n    enabled: true\n    reshard_timeout: 300ms\n"
                                    "    kvstore: {store: inmemory}\n    lifecycler: {id: n1}\n"
                                    ).metrics.scraping_service
        cluster = Cluster(kv, InstanceManager(Stuck), service, GlobalConfig())  # type: ignore[arg-type]
        await cluster.membership.register()
        await cluster.membership.set_state(State.ACTIVE)
        result = await cluster.sharder.reshard()
        return result.error

    error = asyncio.run(scenario())
    assert error == "reshard timed out after 0.3s waiting for instances to start or stop (1 wanted on this node)"


def test_json_lines_have_no_reprs_either() -> None:
    from service.wal import Position

    record = logging.LogRecord("service.wal", logging.INFO, "", 0, "marker stored", None, None)
    record.fields = {"component": "wal", "position": Position(3, 4096), "jobs": {"b", "a"}, "gone": None,
                     "ok": True}
    line = log.JSONFormatter().format(record)
    assert '"position":{"segment":3,"offset":4096}' in line and '"jobs":["a","b"]' in line
    assert '"ok":true' in line and "gone" not in line and "Position(" not in line
