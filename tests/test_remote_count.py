"""count() on its light views gives what the full WriteRequest says: samples, exemplars, histograms,
metadata and the highest timestamp, whatever the timestamps (zero, omitted, negative, repeated)."""

from __future__ import annotations

import random

import pytest

from service.metrics.remote.batch import count
from service.metrics.remote.codec import CodecError
from service.proto.remote_pb2 import WriteRequest


def reference(raw: bytes) -> tuple[int, int, int, int, int]:
    req = WriteRequest.FromString(raw)
    samples = [s for ts in req.timeseries for s in ts.samples]
    histograms = [h for ts in req.timeseries for h in ts.histograms]
    top = max([s.timestamp for s in samples], default=0)
    for h in histograms:
        top = max(top, h.timestamp)
    return (len(samples), sum(len(ts.exemplars) for ts in req.timeseries), len(histograms), len(req.metadata),
            top)


def request(rng: random.Random) -> bytes:
    req = WriteRequest()
    for i in range(rng.randrange(0, 30)):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value=f"m{i}")
        for _ in range(rng.randrange(0, 4)):
            ts.samples.add(value=rng.choice([0.0, 1.5, -0.0]), timestamp=rng.choice([0, 1, -5, 1_700_000_000_000]))
        if rng.random() < 0.1:
            ts.exemplars.add(value=1.0, timestamp=3)
        if rng.random() < 0.1:
            ts.histograms.add(count_int=2, timestamp=rng.choice([0, 9, 1_800_000_000_000]))
    if rng.random() < 0.2:
        req.metadata.add(metric_family_name="m0", help="h")
    return req.SerializeToString()


@pytest.mark.parametrize("seed", range(60))
def test_count_matches_the_full_request(seed: int) -> None:
    raw = request(random.Random(seed))
    c = count(raw)
    assert (c.samples, c.exemplars, c.histograms, c.metadata, c.highest_ts_ms) == reference(raw)
    assert count(raw, highest=False).samples == c.samples


def test_a_repeated_timestamp_field_counts_as_the_last_one() -> None:
    # One sample whose timestamp field appears twice (the last wins) beside one without a timestamp.
    series = b"\x12\x06\x10\x09\x10\x02\x10\x03" + b"\x12\x00"
    raw = b"\x0a" + bytes((len(series),)) + series
    assert count(raw).highest_ts_ms == reference(raw)[4] == 3 and count(raw).samples == 2


def test_garbage_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        count(b"\x0a\x05\x12")
