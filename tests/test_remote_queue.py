"""The remote_write sender against a capture peer with scripted faults: retry, drop, order, restart, stop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import snappy
from prometheus_client import REGISTRY

from service.metrics.remote.queue import ISOLATE_SENDS, RemoteWriteQueue
from service.proto.remote_pb2 import MetricMetadata, WriteRequest
from service.wal import WAL
from tests.helpers.polling import wait_until
from tests.helpers.prometheus_server import free_port
from tests.helpers.remote_helpers import RECORD, CapturePeer, Reply, fill_wal, request_body, rw_config


def run(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(coro)


async def _open(tmp_path: Path) -> WAL:
    return await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")


def test_pass_through_delivers_everything_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer().start()
        await fill_wal(wal, 30, 100)
        q = RemoteWriteQueue(wal, rw_config(peer.url), instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: peer.samples() == 3000, what="all samples")
        await q.stop(5)
        assert len(peer.accepted) == 100 and peer.in_order() and peer.duplicates == 0
        assert q.samples_sent == 3000 and q.samples_failed == 0
        assert wal.marker("test").load() == wal.durable_position
        h = peer.headers[0]
        assert h["Content-Encoding"] == "snappy" and h["Content-Type"] == "application/x-protobuf"
        assert h["X-Prometheus-Remote-Write-Version"] == "0.1.0" and h["User-Agent"]
        # 2000 samples per send by default: 30 records x 100 samples cut into batches of 20 records
        assert peer.requests == 2
        await peer.stop()
        wal.close()
    run(scenario())


def test_503_then_204_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(503) if n < 4 else Reply(204)).start()
        cfg = rw_config(peer.url, "queue_config: {max_samples_per_send: 150, batch_send_deadline: 20ms, "
                                  "min_backoff: 5ms, max_backoff: 20ms}\n")
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        await fill_wal(wal, 20, 50)
        await wait_until(lambda: peer.samples() == 1000, what="all samples")
        await q.stop(5)
        assert peer.in_order() and peer.duplicates == 0 and len(peer.accepted) == 50
        assert all(len(ts) == 20 for ts in peer.accepted.values())
        assert q.samples_retried >= 4 * 50
        await peer.stop()
        wal.close()
    run(scenario())


def test_429_retried_after_retry_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(429, headers={"Retry-After": "1"}) if n == 0 else Reply()).start()
        await fill_wal(wal, 2, 10)
        q = RemoteWriteQueue(wal, rw_config(peer.url), instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: peer.samples() == 20, what="delivery after 429")
        await q.stop(5)
        assert peer.times[1] - peer.times[0] >= 0.9  # waited Retry-After, not min_backoff (10ms)
        assert q.samples_retried == 20 and q.samples_failed == 0
        await peer.stop()
        wal.close()
    run(scenario())


def _has_series_3_of_record_0(wr: WriteRequest) -> bool:
    return any(any(lb.name == "i" and lb.value == "3" for lb in ts.labels) and ts.samples[0].value == 3.0
               for ts in wr.timeseries)


def test_400_drops_only_what_is_refused_alone_and_marker_advanced(tmp_path: Path) -> None:
    """A refused batch is split until the series the remote refuses stands alone: that one is dropped and
    counted, the other 29 samples are delivered (one bad part never takes its batch with it)."""
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(refuse=_has_series_3_of_record_0).start()
        cfg = rw_config(peer.url, "queue_config: {max_samples_per_send: 10, batch_send_deadline: 20ms}\n")
        await fill_wal(wal, 3, 10)
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: q.acked_position == wal.durable_position, what="all acked")
        await q.stop(5)
        assert q.samples_failed == 1 and q.batches_failed == 1 and q.samples_retried == 0
        assert peer.samples() == 29 and q.samples_sent == 29
        assert (("__name__", "rw_test"), ("i", "3"), ("job", "rwtest")) in peer.accepted  # records 1 and 2
        assert _isolated(peer.url, "refused") == 1
        assert wal.marker("test").load() == wal.durable_position
        await peer.stop()
        wal.close()
    run(scenario())


def test_many_refused_records_in_one_batch_never_cost_the_good_ones(tmp_path: Path) -> None:
    """A queue that fell behind sends one large batch. When 20 of its 200 records are refused (Prometheus
    rolls a whole request back for one out-of-order or duplicate sample and answers 400), isolating them takes
    more requests than a fixed budget allowed, and the rest of the batch, acknowledged writes of other
    clients, was dropped with them. Only refusals spend the budget now. The stand-in peer refuses any request
    holding a bad series, as Prometheus does, but deterministically."""
    async def scenario() -> None:
        wal = await _open(tmp_path)
        now_ms = int(time.time() * 1000)
        for r in range(200):
            name = "bad" if r % 10 == 3 else "good"
            await wal.append_durable(RECORD, request_body(2, now_ms - 200_000 + r * 1000, name=name, first=2 * r))
        peer = await CapturePeer(refuse=lambda wr: any(lb.value == "bad" for ts in wr.timeseries
                                                       for lb in ts.labels)).start()
        cfg = rw_config(peer.url, "queue_config: {max_samples_per_send: 1000, batch_send_deadline: 20ms}\n")
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: q.acked_position == wal.durable_position, what="all acked or dropped")
        await q.stop(5)
        assert peer.samples() == 360 and q.samples_sent == 360  # every good sample
        assert q.samples_failed == 40  # exactly the bad ones
        await peer.stop()
        wal.close()
    run(scenario())


def test_remote_refusing_everything_costs_a_bounded_number_of_requests(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(400)).start()
        await fill_wal(wal, 1, 200)
        q = RemoteWriteQueue(wal, rw_config(peer.url), instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: q.acked_position == wal.durable_position, what="all dropped")
        await q.stop(5)
        assert q.samples_failed == 200 and peer.samples() == 0
        assert 3 <= peer.requests <= 1 + ISOLATE_SENDS + 2  # one record: the fixed allowance and its own two
        await peer.stop()
        wal.close()
    run(scenario())


def test_unreadable_record_is_skipped_and_counted_and_its_batch_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer().start()
        now_ms = int(time.time() * 1000)
        await wal.append_durable(1, request_body(5, now_ms))
        await wal.append_durable(1, b"\xff\xff not snappy at all")
        await wal.append_durable(1, request_body(5, now_ms, first=5))
        q = RemoteWriteQueue(wal, rw_config(peer.url), instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: q.acked_position == wal.durable_position, what="all acked")
        await q.stop(5)
        assert peer.samples() == 10 and peer.requests == 1 and q.samples_failed == 0
        assert _isolated(peer.url, "unreadable") == 1 and _isolated(peer.url, "refused") == 0
        await peer.stop()
        wal.close()
    run(scenario())


def _isolated(url: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("agent_remote_write_isolated_total",
                                      {"remote_name": "test", "url": url, "instance_name": "inst", "reason": reason})
    return value or 0.0


def test_429_not_retried_when_disabled(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(429)).start()
        cfg = rw_config(peer.url, "queue_config: {retry_on_http_429: false, batch_send_deadline: 20ms}\n")
        await fill_wal(wal, 1, 5)
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: q.samples_failed == 5, what="drop")
        await q.stop(5)
        assert peer.requests == 1
        await peer.stop()
        wal.close()
    run(scenario())


def test_slow_remote_beyond_timeout_is_retried(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(delay=2.0) if n == 0 else Reply()).start()
        cfg = rw_config(peer.url, "remote_timeout: 200ms\n")
        await fill_wal(wal, 2, 10)
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: q.samples_sent == 20, what="delivery after a timeout")
        await q.stop(5)
        assert q.samples_retried == 20 and peer.requests >= 2
        await peer.stop()
        wal.close()
    run(scenario())


def test_connection_refused_then_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        port = free_port()
        await fill_wal(wal, 5, 10)
        q = RemoteWriteQueue(wal, rw_config(f"http://127.0.0.1:{port}/api/v1/write"), instance="inst",
                             external_labels={})
        await q.start()
        await wait_until(lambda: q.samples_retried >= 100, what="retries while down")
        peer = await CapturePeer().start(port)
        await wait_until(lambda: peer.samples() == 50, what="delivery once up")
        await q.stop(5)
        assert peer.in_order() and q.samples_sent == 50
        await peer.stop()
        wal.close()
    run(scenario())


def test_restart_resumes_from_marker(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(delay=0.02)).start()
        cfg = rw_config(peer.url, "queue_config: {max_samples_per_send: 20, batch_send_deadline: 10ms}\n")
        await fill_wal(wal, 100, 20)
        q1 = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={}, marker_interval=0.05)
        await q1.start()
        await wait_until(lambda: peer.requests >= 10, what="some batches")
        await q1.stop(0.1)  # far too short to send the other ~90 batches
        first = peer.samples()
        assert first < 2000 and wal.marker("test").load() is not None
        q2 = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q2.start()
        await wait_until(lambda: peer.samples() == 2000, what="the rest after restart")
        await q2.stop(5)
        assert peer.in_order() and all(len(ts) == 100 for ts in peer.accepted.values())
        assert peer.duplicates <= 20  # at most the batch in flight at stop was sent twice
        print(f"restart: {first} samples before stop, {peer.duplicates} duplicate samples")
        await peer.stop()
        wal.close()
    run(scenario())


def test_stop_with_unreachable_remote_returns_within_deadline(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        await fill_wal(wal, 5, 10)
        q = RemoteWriteQueue(wal, rw_config(f"http://127.0.0.1:{free_port()}/api/v1/write"), instance="inst",
                             external_labels={})
        await q.start()
        await wait_until(lambda: q.samples_retried > 0, what="a failed attempt")
        started = time.monotonic()
        await q.stop(1.0)
        assert time.monotonic() - started < 1.1
        assert not q.running and wal.marker("test").load() is None  # nothing was acknowledged
        wal.close()
    run(scenario())


def test_partial_batch_sent_after_deadline_and_metadata_passes(tmp_path: Path) -> None:
    """A batch far below max_samples_per_send goes out once batch_send_deadline has passed since its first
    record: not before (it waits for more), and not much later (it does not wait for a full batch)."""
    deadline = 0.4
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer().start()
        cfg = rw_config(peer.url, f"queue_config: {{batch_send_deadline: {int(deadline * 1000)}ms, "
                                  "max_samples_per_send: 2000}\n")
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        meta = WriteRequest(metadata=[MetricMetadata(type=1, metric_family_name="rw_test", help="h")])
        appended = time.monotonic()
        await wal.append_durable(1, snappy.compress(meta.SerializeToString()))
        await wait_until(lambda: peer.metadata == 1, what="metadata-only request")
        assert peer.times[0] - appended >= deadline * 0.95

        appended = time.monotonic()
        await wal.append_durable(1, request_body(3, int(time.time() * 1000)))
        await wal.append_durable(1, request_body(3, int(time.time() * 1000) + 1, first=3))
        await wait_until(lambda: peer.samples() == 6, what="a partial batch after batch_send_deadline")
        waited = peer.times[-1] - appended
        assert peer.requests == 2  # both records in one request, cut by the deadline
        assert deadline * 0.95 <= waited < deadline + 2.0, waited
        await q.stop(5)
        await peer.stop()
        wal.close()
    run(scenario())


@pytest.mark.parametrize("shards", [3])
def test_shards_split_by_series_keep_order(tmp_path: Path, shards: int) -> None:
    async def scenario() -> None:
        wal = await _open(tmp_path)
        peer = await CapturePeer(lambda n: Reply(503) if n % 4 == 1 else Reply()).start()
        cfg = rw_config(peer.url, f"queue_config: {{min_shards: {shards}, max_samples_per_send: 200, "
                                  "batch_send_deadline: 10ms, min_backoff: 5ms, max_backoff: 10ms}\n")
        await fill_wal(wal, 30, 40)
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={"cluster": "c1"})
        await q.start()
        await wait_until(lambda: peer.samples() == 1200, what="all samples through shards")
        await q.stop(5)
        assert peer.in_order() and peer.duplicates == 0 and len(peer.accepted) == 40
        assert all(dict(k)["cluster"] == "c1" for k in peer.accepted)
        assert q.samples_retried > 0
        await peer.stop()
        wal.close()
    run(scenario())
