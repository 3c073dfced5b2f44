"""Node-level self metrics: event loop lag, the KV probe, the WAL filesystem and targets by state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from service.http.requestmetrics import handler_of
from service.ops.nodemetrics import KV_UP, LOOP_LAG, LoopLagMonitor, NodeCollector


def _lag_count() -> float:
    return next(s.value for m in LOOP_LAG.collect() for s in m.samples if s.name.endswith("_count"))


def _lag_over(bound: str) -> float:
    """Observations above `bound` seconds (+Inf bucket minus the `bound` bucket)."""
    samples = {s.labels.get("le"): s.value for m in LOOP_LAG.collect() for s in m.samples
               if s.name.endswith("_bucket")}
    return samples["+Inf"] - samples[bound]


def test_a_blocked_loop_shows_as_lag_and_a_failing_store_as_down() -> None:
    async def scenario() -> None:
        async def failing_probe() -> None:
            raise ConnectionError("etcd down")

        monitor = LoopLagMonitor(failing_probe, interval=0.02, kv_every=1)
        before, slow_before = _lag_count(), _lag_over("0.1")
        monitor.start()
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # block the loop, as a CPU-bound request would
        await asyncio.sleep(0.1)
        await monitor.stop()
        assert _lag_count() > before
        assert _lag_over("0.1") > slow_before
        assert KV_UP._value.get() == 0

        async def ok_probe() -> None:
            return None

        monitor = LoopLagMonitor(ok_probe, interval=0.01, kv_every=1)
        monitor.start()
        await asyncio.sleep(0.1)
        await monitor.stop()
        assert KV_UP._value.get() == 1

    asyncio.run(scenario())


def test_collector_reads_targets_and_the_wal_filesystem(tmp_path: Path) -> None:
    targets = [{"state": "up", "scrape_duration_ms": 20}, {"state": "down", "scrape_duration_ms": 500},
               {"state": "up", "scrape_duration_ms": 30}]
    registry = CollectorRegistry()
    registry.register(NodeCollector(lambda: str(tmp_path / "not-yet-created"), lambda: targets))
    text = generate_latest(registry).decode()
    assert 'agent_metrics_targets{state="up"} 2.0' in text
    assert 'agent_metrics_targets{state="down"} 1.0' in text
    assert 'agent_metrics_targets{state="unknown"} 0.0' in text
    assert "agent_metrics_targets_slowest_scrape_seconds 0.5" in text
    assert "agent_metrics_targets_last_scrape_seconds 0.55" in text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}
    avail, size = values["agent_wal_filesystem_avail_bytes"], values["agent_wal_filesystem_size_bytes"]
    assert 0 < avail <= size


def test_request_metric_groups_paths_without_names() -> None:
    assert handler_of("/agent/api/v1/config/a%2Fb") == "config_api"
    assert handler_of("/agent/api/v1/configs") == "config_api"
    assert handler_of("/agent/api/v1/metrics/instance/x/write") == "remote_write"
    assert handler_of("/loki/api/v1/push") == "loki_push"
    assert handler_of("/api/logs/search") == "log_search"
    assert handler_of("/agent/api/v1/metrics/targets") == "agent_api"
    assert handler_of("/-/ready") == "ops"
    assert handler_of("/nope") == "other"
