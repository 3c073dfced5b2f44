"""Targets API routes and target-stats over a real WAL filled by a ScrapeManager."""

from __future__ import annotations

import asyncio

import aiohttp
import uvicorn
from starlette.applications import Starlette

from service.metrics.scrape.manager import ScrapeManager
from service.metrics.scrape.routes import targets_routes
from service.metrics.scrape.targetstats import main as target_stats_main
from service.metrics.scrape.targetstats import target_stats
from service.wal import WAL
from tests.helpers.polling import wait_until
from tests.helpers.scrape_targets import TargetServer, scrape_config


def test_targets_api_and_target_stats(tmp_path, capsys) -> None:
    state: dict = {}

    async def scenario() -> None:
        server = TargetServer()
        await server.start()
        wal = WAL.open(str(tmp_path / "wal"), instance="i1")

        async def append(body: bytes) -> None:
            await wal.append_durable(1, body)
        sc = scrape_config(f"job_name: j\nscrape_interval: 200ms\nscrape_timeout: 150ms\nmetrics_path: /text\n"
                           f"static_configs:\n  - targets: ['127.0.0.1:{server.port}', 'localhost:{server.port}']\n")
        bad = scrape_config(f"job_name: a_bad\nscrape_interval: 200ms\nscrape_timeout: 150ms\nmetrics_path: /x\n"
                            f"static_configs:\n  - targets: ['127.0.0.1:{server.port}']\n")
        mgr = ScrapeManager("i1", [sc, bad], append)
        await mgr.start()
        try:
            await wait_until(lambda: len(mgr.targets()) == 3 and all(t["state"] != "unknown" for t in mgr.targets()))
            state["targets"] = mgr.targets()
        finally:
            await mgr.stop(write_stale=False)
            await wal.aclose()
            await server.stop()
        state["port"] = server.port
    asyncio.run(scenario())

    async def api() -> None:
        app = Starlette(routes=targets_routes(lambda: state["targets"]))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        task = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                for path in ("/agent/api/v1/metrics/targets", "/agent/api/v1/targets"):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                        state[path] = await resp.json()
        finally:
            server.should_exit = True
            await task
    asyncio.run(api())
    for path in ("/agent/api/v1/metrics/targets", "/agent/api/v1/targets"):
        body = state[path]
        assert body["status"] == "success"
        data = body["data"]
        assert [(t["target_group"], t["labels"]["instance"]) for t in data] == [
            ("a_bad", f"127.0.0.1:{state['port']}"), ("j", f"127.0.0.1:{state['port']}"),
            ("j", f"localhost:{state['port']}")]
        assert data[0]["state"] == "down" and "404" in data[0]["scrape_error"]
        t = data[1]
        assert set(t) == {"instance", "target_group", "endpoint", "state", "discovered_labels", "labels",
                          "last_scrape", "scrape_duration_ms", "scrape_error"}
        assert t["state"] == "up" and t["scrape_error"] == "" and t["last_scrape"].endswith("Z")
        assert t["endpoint"] == f"http://127.0.0.1:{state['port']}/text"
        assert t["discovered_labels"]["__address__"] == f"127.0.0.1:{state['port']}"
        assert t["discovered_labels"]["__scrape_interval__"] == "200ms"

    rows = dict(target_stats(str(tmp_path), "j", f"127.0.0.1:{state['port']}"))
    assert rows["lat_bucket"] == 2 and rows["requests_total"] == 2 and rows["up"] == 1
    assert target_stats(str(tmp_path), "j", "nope:1") == []
    assert target_stats_main([str(tmp_path), "-j", "j", "-i", f"127.0.0.1:{state['port']}"]) == 0
    out = capsys.readouterr().out
    assert "requests_total" in out and out.index("lat_bucket") < out.index("temp ")
