"""Splitting a batch across shards by the target that wrote each record (shards.split_by_owner): whole
records, each target's records together and in WAL order, counts exactly what the requests carry. The peer
is the scriptable capture server of the sender tests (it fails some requests on purpose)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
from pathlib import Path

import pytest
import snappy

from service.metrics.recordcounts import COUNTS, RecordCounts
from service.metrics.remote.batch import count
from service.metrics.remote.queue import RemoteWriteQueue
from service.metrics.remote.shards import split_by_owner
from service.proto.remote_pb2 import WriteRequest
from service.wal import WAL
from tests.helpers.polling import wait_until
from tests.helpers.remote_helpers import RECORD, CapturePeer, Reply, request_body, rw_config


@pytest.mark.parametrize("seed", range(40))
def test_split_by_owner_keeps_each_owner_whole_and_in_order(seed: int) -> None:
    rng = random.Random(seed)
    owners = [rng.choice([b"a", b"b", b"c", b"d", b"e"]) for _ in range(rng.randrange(1, 30))]
    samples = [rng.randrange(0, 3000) for _ in owners]
    shards = rng.randrange(2, 6)
    parts = split_by_owner(owners, samples, shards)
    assert sorted(i for part in parts for i in part) == list(range(len(owners)))  # each record once
    assert all(part and part == sorted(part) for part in parts)
    assert len(parts) == min(shards, len(set(owners)))
    where = {owners[i]: n for n, part in enumerate(parts) for i in part}
    assert all(where[owners[i]] == n for n, part in enumerate(parts) for i in part)  # an owner in one part


@pytest.mark.parametrize("rewrite", ["none", "external_labels", "relabel_drop"])
def test_scrape_records_split_by_target_arrive_whole_in_order_and_counted(tmp_path: Path, rewrite: str) -> None:
    """External labels keep every sample (the noted counts hold); a rule dropping a target's series does not
    (the rewritten records are counted again)."""
    targets, scrapes, series = 4, 10, 50
    kept = targets - 1 if rewrite == "relabel_drop" else targets
    seen: list[collections.Counter[str]] = []

    def spy(req: WriteRequest) -> bool:
        seen.append(collections.Counter(next(lb.value for lb in ts.labels if lb.name == "__name__")
                                        for ts in req.timeseries))
        return False

    async def scenario() -> None:
        wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
        peer = await CapturePeer(lambda n: Reply(503) if n % 4 == 1 else Reply(), refuse=spy).start()
        start = 1_700_000_000_000
        for s in range(scrapes):
            for t in range(targets):
                body = request_body(series, start + s * 1000 + t, name=f"t{t}", value=float(s))
                COUNTS.note(body, RecordCounts(*dataclasses.astuple(count(snappy.uncompress(body)))), b"up-t%d" % t)
                await wal.append_durable(RECORD, body)
        rules = ("write_relabel_configs: [{source_labels: [__name__], regex: t3, action: drop}]\n"
                 if rewrite == "relabel_drop" else "")
        cfg = rw_config(peer.url, "queue_config: {min_shards: 3, max_shards: 3, max_samples_per_send: 100, "
                                  "batch_send_deadline: 10ms, min_backoff: 5ms, max_backoff: 10ms}\n" + rules)
        external = {"cluster": "c1"} if rewrite == "external_labels" else {}
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels=external)
        await q.start()
        await wait_until(lambda: peer.samples() == kept * scrapes * series, what="every sample through shards")
        await q.stop(5)
        assert peer.in_order() and peer.duplicates == 0 and peer.samples() == kept * scrapes * series
        assert q.samples_sent == kept * scrapes * series and q.samples_failed == 0 and q.samples_retried > 0
        assert q.samples_dropped == (targets - kept) * scrapes * series
        assert q.highest_sent_ts_ms == start + (scrapes - 1) * 1000 + kept - 1
        assert all((dict(k).get("cluster") == "c1") == (rewrite == "external_labels") for k in peer.accepted)
        if rewrite != "relabel_drop":  # (with rules the noted counts cannot hold: split by series)
            # whole records only: every target's share of a request is a whole number of its records
            assert all(n % series == 0 for request in seen for n in request.values())
            assert max(len(request) for request in seen) < targets  # split: no request held every target
        await peer.stop()
        wal.close()
    asyncio.run(scenario())


def test_a_batch_that_fits_one_request_is_not_split(tmp_path: Path) -> None:
    seen: list[int] = []

    def spy(req: WriteRequest) -> bool:
        seen.append(len(req.timeseries))
        return False

    async def scenario() -> None:
        wal = await asyncio.to_thread(WAL.open, str(tmp_path / "wal"), instance="inst")
        peer = await CapturePeer(refuse=spy).start()
        for r in range(6):  # records of the /write receiver (nothing noted): the series walk would split them
            await wal.append_durable(RECORD, request_body(40, 1_700_000_000_000 + r, value=float(r)))
        cfg = rw_config(peer.url, "queue_config: {min_shards: 3, max_shards: 3, max_samples_per_send: 1000, "
                                  "batch_send_deadline: 10ms}\n")
        q = RemoteWriteQueue(wal, cfg, instance="inst", external_labels={})
        await q.start()
        await wait_until(lambda: peer.samples() == 240, what="every sample")
        await q.stop(5)
        assert q.shards == 3 and peer.in_order() and q.samples_sent == 240
        assert all(n % 40 == 0 for n in seen)  # whole records: each batch went out in one request
    asyncio.run(scenario())
