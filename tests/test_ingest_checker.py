"""SeriesChecker and the partial views it decodes with: exact counts and keys against a full parse."""

from __future__ import annotations

import random

import pytest
import snappy

from service.metrics import views
from service.metrics.ingest import CodecError, InvalidSeries, SeriesChecker
from service.proto.remote_pb2 import TimeSeries, WriteRequest


def random_request(rng: random.Random) -> WriteRequest:
    req = WriteRequest()
    for i in range(rng.randint(0, 40)):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value=f"m{i}")
        for j in range(rng.randint(0, 5)):
            ts.labels.add(name=f"l{j}", value="\x00\x12" * rng.randint(0, 3) + str(rng.random()))
        for _ in range(rng.randint(0, 6)):
            ts.samples.add(value=rng.choice([0.0, 18.0, rng.random()]), timestamp=rng.randint(0, 1 << 45))
        for _ in range(rng.randint(0, 2)):
            ex = ts.exemplars.add(value=0.0, timestamp=0)
            ex.labels.add(name="trace_id", value="\x1a\x00")
        for _ in range(rng.randint(0, 2)):
            ts.histograms.add(count_int=rng.randint(0, 1000), timestamp=rng.randint(0, 1 << 40))
    for _ in range(rng.randint(0, 3)):
        req.metadata.add(type=1, metric_family_name="m", help="h")
    return req


@pytest.mark.parametrize("seed", range(50))
def test_counts_and_keys_match_a_full_parse(seed: int) -> None:
    req = random_request(random.Random(seed))
    raw = req.SerializeToString()
    want = (len(req.timeseries), sum(len(t.samples) for t in req.timeseries),
            sum(len(t.exemplars) for t in req.timeseries), sum(len(t.histograms) for t in req.timeseries),
            len(req.metadata))
    assert views.counts(raw) == want
    keys = [k.SerializeToString() for k in views.series_keys(raw).timeseries]
    assert [list(TimeSeries.FromString(k).labels) for k in keys] == [list(t.labels) for t in req.timeseries]
    stats = SeriesChecker().decode(snappy.compress(raw), 1 << 30)
    assert (stats.series, stats.samples, stats.exemplars, stats.histograms, stats.metadata) == want


def test_new_label_sets_checked_once() -> None:
    checker = SeriesChecker()
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="m")
    ts.samples.add(value=1, timestamp=1)
    body = snappy.compress(req.SerializeToString())
    assert checker.decode(body, 1 << 20).new_series == 1
    assert checker.decode(body, 1 << 20).new_series == 0
    ts.labels.add(name="bad-name", value="x")
    with pytest.raises(InvalidSeries):
        checker.decode(snappy.compress(req.SerializeToString()), 1 << 20)
    assert len(checker) == 1


def test_label_bytes_that_are_not_a_label_are_rejected() -> None:
    raw = b"\x0a\x0b\x0a\x09" + b'{job="x"}'  # a series whose one "label" is a bare string
    with pytest.raises(CodecError, match=r"proto|unexpected EOF"):
        SeriesChecker().decode(snappy.compress(raw), 1 << 20)


def _series_pool(rng: random.Random) -> list[list[tuple[str, str]]]:
    """Label sets for a sender's batches: mostly valid, some a receiver must refuse."""
    pool = [[("__name__", f"m{i}"), ("job", "j"), ("pod", f"p{rng.randint(0, 3)}")] for i in range(12)]
    pool += [[("__name__", "bad"), ("bad-name", "x")], [("__name__", "dup"), ("a", "1"), ("a", "2")], []]
    return pool


def _outcome(checker: SeriesChecker, body: bytes) -> tuple:
    try:
        s = checker.decode(body, 1 << 24)
    except CodecError as exc:
        return (type(exc).__name__, str(exc))
    return (s.series, s.samples, s.exemplars, s.histograms, s.metadata, s.decoded_bytes)


@pytest.mark.parametrize("seed", range(20))
def test_known_set_shortcut_agrees_with_the_plain_path(seed: int) -> None:
    """Batches that repeat label sets with new values (the shortcut's case), now and then one with a set the
    plain path refuses: the same verdict and counts, request by request, with and without the shortcut."""
    rng = random.Random(seed)
    pool = _series_pool(rng)
    shapes = [rng.sample(range(len(pool)), rng.randint(1, 6)) for _ in range(4)]
    plain, fast = SeriesChecker(known_sets=0), SeriesChecker(known_sets=3)
    for _ in range(60):
        req = WriteRequest()
        for index in rng.choice(shapes):
            ts = req.timeseries.add()
            for name, value in pool[index]:
                ts.labels.add(name=name, value=value)
            for _ in range(rng.randint(1, 2)):
                ts.samples.add(value=rng.random(), timestamp=rng.randint(0, 1 << 40))
        body = snappy.compress(req.SerializeToString())
        assert _outcome(fast, body) == _outcome(plain, body)


def test_a_known_shape_with_one_new_bad_series_is_refused() -> None:
    """Same series count and first series as a request that passed, one later label set invalid: the
    shortcut must not wave it through."""
    checker = SeriesChecker()

    def body(last: str) -> bytes:
        req = WriteRequest()
        for name in ("a", "b", last):
            ts = req.timeseries.add()
            ts.labels.add(name="__name__", value="m")
            ts.labels.add(name=name, value="v")
            ts.samples.add(value=1, timestamp=1)
        return snappy.compress(req.SerializeToString())

    assert checker.decode(body("c"), 1 << 20).series == 3
    assert checker.decode(body("c"), 1 << 20).new_series == 0
    with pytest.raises(InvalidSeries, match="bad-name"):
        checker.decode(body("bad-name"), 1 << 20)
    with pytest.raises(InvalidSeries, match="bad-name"):
        checker.decode(body("bad-name"), 1 << 20)  # a refused request is never remembered as known
