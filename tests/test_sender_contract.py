"""The contract every WAL → HTTP sender shares (issue 15.4): the backoff of service/http/retry.py (Retry-After
in seconds or as an HTTP date, jitter, the cap), the marker policy and the stop/flush contract of
service/wal/consumer.py, checked on both real senders (remote_write queue and Loki client) with a remote that
never answers: nothing listens on the port, so every send fails as a connection error, which both report as
the shared RecoverableError."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from pathlib import Path

import pytest
import snappy

from service.config.schema import loads
from service.http.retry import MAX_RETRY_AFTER, Backoff, RecoverableError, parse_retry_after
from service.logs.client import LokiClient
from service.logs.config import ClientConfig
from service.logs.record import RECORD_TYPE, encode_record
from service.metrics.remote.queue import RemoteWriteQueue
from service.proto.push_pb2 import PushRequest
from service.wal import WAL, Position
from service.wal.consumer import MarkerPolicy, finish_within
from tests.helpers.aio import run
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.remote_helpers import fill_wal, rw_config


# --- the backoff ------------------------------------------------------------------------------------------
def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0 and parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after("99999999999999999999") == MAX_RETRY_AFTER == 300.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 3600) == MAX_RETRY_AFTER
    soon = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= (parse_retry_after(soon) or 0.0) <= 5.0


def test_backoff_is_jittered_doubles_and_never_exceeds_its_cap() -> None:
    random.seed(15)
    runs = [[b.next() for _ in range(8)] for b in (Backoff(0.1, 1.0) for _ in range(200))]
    firsts, seconds, lasts = ([r[i] for r in runs] for i in (0, 1, 7))
    assert all(0.1 <= w <= 0.2 for w in firsts) and all(0.2 <= w <= 0.4 for w in seconds)
    assert all(0.5 <= w <= 1.0 for w in lasts)  # the range stops growing at the cap: no wait over max_delay
    assert len({round(w, 6) for w in firsts}) > 100  # jittered: senders that failed together spread out
    assert max(max(r) for r in runs) <= 1.0
    fixed = Backoff(0.5, 0.5)
    assert [fixed.next() for _ in range(3)] == [0.5, 0.5, 0.5]


def test_backoff_honours_retry_after_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.01, 0.05)
    assert b.next(retry_after=2.0) == 2.0  # the server's hint is a floor
    assert b.next(retry_after=0.0) <= 0.05  # a hint shorter than the backoff does not shorten it
    assert b.next(retry_after=10_000.0) == MAX_RETRY_AFTER
    for _ in range(10):
        b.next()
    b.reset()
    assert 0.01 <= b.next() <= 0.02


# --- the marker policy -------------------------------------------------------------------------------------
class _FlakyMarker:
    """A progress marker whose next store fails as a full disk would (a real one cannot be made to fail
    on demand without filling a filesystem; tests/test_wal_faults.py does that for the WAL itself)."""

    def __init__(self) -> None:
        self.stored: list[Position] = []
        self.fail = False

    def load(self) -> Position | None:
        return self.stored[-1] if self.stored else None

    async def store_async(self, position: Position) -> None:
        if self.fail:
            self.fail = False
            raise OSError(28, "No space left on device")
        self.stored.append(position)


def test_marker_policy_throttles_forces_and_retries_a_failed_store() -> None:
    async def scenario() -> None:
        marker = _FlakyMarker()
        policy = MarkerPolicy(marker, interval=60.0)  # type: ignore[arg-type]
        assert await policy.load() is None
        assert not await policy.store(Position(0, 10))  # within the interval: not yet
        assert await policy.store(Position(0, 10), force=True) and marker.stored == [Position(0, 10)]
        assert await policy.store(Position(0, 10)) and len(marker.stored) == 1  # already stored: no write
        marker.fail = True
        with pytest.raises(OSError):
            await policy.store(Position(0, 20), force=True)
        assert policy.stored == Position(0, 10)  # what the marker really holds
        assert await policy.store(Position(0, 20), force=True) and policy.stored == Position(0, 20)
        every = MarkerPolicy(marker, interval=0.0)  # type: ignore[arg-type]
        assert await every.store(Position(0, 30)) and await every.store(Position(0, 40))

    run(scenario())


def test_finish_within_cuts_what_runs_past_the_deadline_and_swallows_errors() -> None:
    async def scenario() -> None:
        async def quick() -> None:
            await asyncio.sleep(0)

        async def broken() -> None:
            raise RuntimeError("boom")

        assert await finish_within([asyncio.ensure_future(quick()), asyncio.ensure_future(broken())], 5) == 0
        slow = asyncio.ensure_future(asyncio.sleep(60))
        began = time.monotonic()
        assert await finish_within([slow, asyncio.ensure_future(quick())], 0.1) == 1
        assert slow.cancelled() and time.monotonic() - began < 5
        assert await finish_within([], 1) == 0

    run(scenario())


# --- both senders, one contract ------------------------------------------------------------------------------
async def _loki_client(wal: WAL, url: str) -> LokiClient:
    cfg = loads(ClientConfig, f"url: {url}\nbatchwait: 10ms\ndrain_timeout: 30s\n"
                              "backoff_config: {min_period: 10ms, max_period: 50ms, max_retries: 0}\n")
    body = snappy.compress(PushRequest().SerializeToString())
    await wal.append_durable(RECORD_TYPE, encode_record("", 1, body))
    return LokiClient(cfg, wal, "inst")


async def _queue(wal: WAL, url: str) -> RemoteWriteQueue:
    await fill_wal(wal, 2, 10)
    return RemoteWriteQueue(wal, rw_config(url), instance="inst", external_labels={}, flush_deadline=30.0)


@pytest.mark.parametrize("make", [_queue, _loki_client], ids=["remote_write", "loki"])
def test_a_sender_stops_within_its_flush_deadline_and_keeps_what_it_did_not_send(make, tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
        sender = await make(wal, f"http://127.0.0.1:{free_port()}/push")
        await sender.start()
        await wait_until(lambda: bool(sender.last_error), 20, what="a failed attempt")
        began = time.monotonic()
        await sender.stop(0.3)  # the configured default (30 s) is overridden
        assert time.monotonic() - began < 10  # within the deadline (generous: a loaded machine)
        assert sender.stored_position is None  # nothing acknowledged: the next start sends it all again
        again = await make(wal, f"http://127.0.0.1:{free_port()}/push")
        await again.start()
        await wait_until(lambda: bool(again.last_error), 20, what="a failed attempt")
        cutting = asyncio.ensure_future(again.stop())  # the default deadline: 30 s
        await asyncio.sleep(0)  # the stop is under way
        again.cut_flush()  # ends it at once
        await asyncio.wait_for(cutting, 10)
        await asyncio.to_thread(wal.close)

    run(scenario(), 60)


def test_both_senders_report_a_failed_send_as_the_same_outcome(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
        url = f"http://127.0.0.1:{free_port()}/push"
        queue, loki = await _queue(wal, url), await _loki_client(wal, url)
        try:
            with pytest.raises(RecoverableError) as rw:
                await queue._client.store(b"")
            with pytest.raises(RecoverableError) as lk:
                await loki._post(b"", "")
            assert rw.value.status == lk.value.status == 0 and rw.value.retry_after is lk.value.retry_after is None
        finally:
            await queue.stop(0)
            await loki.stop(0)
            await asyncio.to_thread(wal.close)

    run(scenario())


def test_instance_retention_follows_what_each_queue_stored(tmp_path: Path) -> None:
    """MetricsInstance.consumer_positions asks its queues (issue 15.4): the position each one stored, None
    while it has acknowledged nothing. A capture peer accepts one endpoint's writes; the other's never
    answers."""
    from service.metrics.config import GlobalConfig, apply_defaults, parse_instance
    from service.metrics.instance import MetricsInstance
    from tests.helpers.remote_helpers import CapturePeer, request_body

    async def scenario() -> None:
        peer = await CapturePeer().start()
        stuck = f"http://127.0.0.1:{free_port()}/push"
        queue = "{batch_send_deadline: 10ms, min_backoff: 10ms, max_backoff: 50ms}"
        cfg = apply_defaults(parse_instance(
            f"remote_write:\n  - {{url: '{peer.url}', name: ok, queue_config: {queue}}}\n"
            f"  - {{url: '{stuck}', name: stuck, queue_config: {queue}}}\n", "inst"), GlobalConfig())
        inst = MetricsInstance(cfg, GlobalConfig(), str(tmp_path / "wal"))
        await inst.start()
        try:
            assert inst.consumer_positions() == [None, None]
            end = await inst.append(request_body(10, int(time.time() * 1000)), samples=10)
            await wait_until(lambda: peer.samples() == 10, 20, what="the ok endpoint's delivery")
            await wait_until(lambda: inst.consumer_positions()[0] is not None, 20, what="its stored marker")
            ok, stuck_pos = inst.consumer_positions()
            assert ok is not None and ok.segment == end.segment and stuck_pos is None
            assert [q.stored_position for q in inst.queues] == [ok, None]
        finally:
            await inst.halt()
            await inst.drain(0.5)
            await peer.stop()

    run(scenario(), 60)


def test_a_record_still_lingering_when_its_instance_halts_is_sent_by_the_drain(tmp_path: Path) -> None:
    """A scrape's record waits up to its linger for a shared fsync; a scrape loop cancelled by halt() leaves it
    pending. halt() makes it durable, so drain(), which sends what is durable, sends it: a deleted config's
    last scrape is not left unsent in its WAL. Fails without the barrier in halt()."""
    from service.metrics.config import GlobalConfig, apply_defaults, parse_instance
    from service.metrics.instance import MetricsInstance
    from tests.helpers.remote_helpers import CapturePeer, request_body

    async def scenario() -> None:
        peer = await CapturePeer().start()
        cfg = apply_defaults(parse_instance(
            f"remote_write:\n  - {{url: '{peer.url}', queue_config: {{batch_send_deadline: 10ms}}}}\n", "inst"),
            GlobalConfig())
        inst = MetricsInstance(cfg, GlobalConfig(), str(tmp_path / "wal"))
        await inst.start()
        try:
            scrape = asyncio.create_task(inst.append(request_body(10, int(time.time() * 1000)), linger=30.0))
            await wait_until(lambda: inst.wal is not None and inst.wal._pending, 10, what="the lingering record")
            scrape.cancel()  # as halt() cancels a scrape loop waiting on its fsync
            await asyncio.gather(scrape, return_exceptions=True)
            await inst.halt()
            await inst.drain(20)
            assert peer.samples() == 10
        finally:
            await peer.stop()

    run(scenario(), 60)
