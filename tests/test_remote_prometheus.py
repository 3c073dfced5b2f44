"""The remote_write sender against a real Prometheus 2.42 receiver."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest
import snappy
from prometheus_client import REGISTRY

from service.metrics.remote.codec import encode_labels, encode_timeseries
from service.metrics.remote.queue import RemoteWriteQueue
from service.wal import WAL
from tests.helpers.polling import wait_until
from tests.helpers.prometheus_server import PrometheusServer
from tests.helpers.remote_helpers import fill_wal, request_body, rw_config

pytestmark = pytest.mark.slow

REQUESTS, SERIES = 10, 50


def test_prometheus_receives_everything_with_external_labels_and_relabel_drop(tmp_path: Path) -> None:
    with PrometheusServer(tmp_path, receiver=True) as prom:
        async def scenario() -> None:
            wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
            start = await fill_wal(wal, REQUESTS, SERIES)
            cfg = rw_config(prom.write_url, "write_relabel_configs:\n"
                                            "  - {source_labels: [i], regex: '1[0-9]', action: drop}\n")
            q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={"cluster": "c1"})
            await q.start()
            await wait_until(lambda: q.acked_position == wal.durable_position, timeout=20, what="all acked")
            await q.stop(5)
            assert q.samples_sent == REQUESTS * (SERIES - 10)
            assert q.samples_dropped == REQUESTS * 10 and q.samples_failed == 0
            wal.close()

            now = time.time()
            series = prom.series('{__name__="rw_test"}', start=start / 1000 - 60, end=now + 60)
            assert len(series) == SERIES - 10
            assert all(s["cluster"] == "c1" and s["job"] == "rwtest" for s in series)
            assert not any(10 <= int(s["i"]) <= 19 for s in series)
            counts = prom.query("count_over_time(rw_test[10m])", time_s=now)
            assert len(counts) == SERIES - 10
            assert all(r["value"][1] == str(REQUESTS) for r in counts)
            # the last value written is r = REQUESTS - 1, plus the series index
            last = prom.query('rw_test{i="3"}', time_s=now)
            assert float(last[0]["value"][1]) == REQUESTS - 1 + 3
        asyncio.run(scenario())


def test_prometheus_pass_through(tmp_path: Path) -> None:
    with PrometheusServer(tmp_path, receiver=True) as prom:
        async def scenario() -> None:
            wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
            await fill_wal(wal, REQUESTS, SERIES)
            q = RemoteWriteQueue(wal, rw_config(prom.write_url), instance="inst", external_labels={})
            await q.start()
            await wait_until(lambda: q.acked_position == wal.durable_position, timeout=20, what="all acked")
            await q.stop(5)
            wal.close()
            assert q.samples_sent == REQUESTS * SERIES and q.samples_failed == 0
            counts = prom.query("count_over_time(rw_test[10m])", time_s=time.time())
            assert len(counts) == SERIES and all(r["value"][1] == str(REQUESTS) for r in counts)
            assert all("cluster" not in r["metric"] for r in counts)
        asyncio.run(scenario())


def _refused_writes(prom: PrometheusServer) -> float:
    """How many remote write requests Prometheus answered 400 (its own counter)."""
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{") and 'code="400"' in line
               and 'handler="/api/v1/write"' in line)


def _bad_record(kind: str, ts_ms: int) -> tuple[bytes, int]:
    """A decoded record holding field 1 as a varint, and how many good series it carries too."""
    if kind == "bad record":
        return b"\x08\x05", 0
    good = [encode_timeseries(encode_labels([("__name__", "rw_test"), ("i", str(i)), ("job", "rwtest")]),
                              [(ts_ms, 1.0)]) for i in (100, 101)]
    return good[0] + b"\x08\x05" + good[1], 2


@pytest.mark.parametrize("kind", ["bad record", "bad field inside a record"])
def test_one_bad_record_never_takes_its_batch_with_it(tmp_path: Path, kind: str) -> None:
    """Issue 11.1: 50 good requests, one record Prometheus refuses (400 `proto: wrong wireType`), 50 good.
    The receiver now refuses such a body, so it is written straight into the WAL, as a record that slipped in
    would be. Every good series reaches Prometheus; the bad part is dropped alone and counted."""
    with PrometheusServer(tmp_path, receiver=True) as prom:
        async def scenario() -> None:
            wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
            ts_ms = int(time.time() * 1000) - 60_000
            bad, extra_series = _bad_record(kind, ts_ms)
            for i in range(50):
                await wal.append_durable(1, request_body(1, ts_ms, first=i))
            await wal.append_durable(1, snappy.compress(bad))
            for i in range(50, 100):
                await wal.append_durable(1, request_body(1, ts_ms, first=i))
            q = RemoteWriteQueue(wal, rw_config(prom.write_url), instance="inst", external_labels={})
            await q.start()
            await wait_until(lambda: q.acked_position == wal.durable_position, timeout=30, what="all acked")
            await q.stop(5)
            wal.close()
            assert q.samples_sent == 100 + extra_series and q.samples_failed == 0
            # the records went out together first and Prometheus refused that request: the split is what saved them
            assert q.batches_sent >= 2 and _refused_writes(prom) >= 1
            isolated = REGISTRY.get_sample_value("agent_remote_write_isolated_total", {
                "remote_name": "test", "url": prom.write_url, "instance_name": "inst", "reason": "refused"})
            assert isolated == 1
            series = prom.series('{__name__="rw_test"}', start=ts_ms / 1000 - 60, end=time.time() + 60)
            assert sorted(int(s["i"]) for s in series) == list(range(100 + extra_series))
        asyncio.run(scenario())
