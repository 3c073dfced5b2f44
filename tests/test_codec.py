"""Remote write codec: preamble, decode and validation, hand encoding (checked against upb), re-encoding."""

from __future__ import annotations

import math
import struct

import pytest
import snappy

from service.metrics.remote.codec import TooLarge, decode_write_request, encode_labels, encode_sample, encode_timeseries
from service.metrics.remote.rewrite import SeriesRewriter
from service.proto import push_pb2, remote_pb2
from service.proto.wire import CodecError, encode_varint, read_varint, snappy_declared_length
from service.relabel import RelabelConfig

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def upb_series(labels: list[tuple[str, str]], samples: list[tuple[int, float]]) -> remote_pb2.TimeSeries:
    ts = remote_pb2.TimeSeries()
    for name, value in labels:
        ts.labels.add(name=name, value=value)
    for t, v in samples:
        ts.samples.add(timestamp=t, value=v)
    return ts


def test_field_numbers_match_the_published_protos() -> None:
    def numbers(msg: type) -> dict[str, int]:
        return {f.name: f.number for f in msg.DESCRIPTOR.fields}
    assert numbers(remote_pb2.WriteRequest) == {"timeseries": 1, "metadata": 3}
    assert numbers(remote_pb2.TimeSeries) == {"labels": 1, "samples": 2, "exemplars": 3, "histograms": 4}
    assert numbers(remote_pb2.Sample) == {"value": 1, "timestamp": 2}
    assert numbers(remote_pb2.Exemplar) == {"labels": 1, "value": 2, "timestamp": 3}
    assert numbers(remote_pb2.MetricMetadata) == {"type": 1, "metric_family_name": 2, "help": 4, "unit": 5}
    assert numbers(push_pb2.PushRequest) == {"streams": 1, "format": 2}
    assert numbers(push_pb2.StreamAdapter) == {"labels": 1, "entries": 2, "hash": 3}
    assert numbers(push_pb2.EntryAdapter) == {"timestamp": 1, "line": 2, "structuredMetadata": 3, "parsed": 4}
    assert numbers(push_pb2.LabelPairAdapter) == {"name": 1, "value": 2}


def test_loki_push_roundtrip() -> None:
    req = push_pb2.PushRequest()
    stream = req.streams.add(labels='{job="app"}')
    entry = stream.entries.add(line="hello")
    entry.timestamp.FromNanoseconds(1_700_000_000_123_456_789)
    entry.structuredMetadata.add(name="trace_id", value="abc")
    back = push_pb2.PushRequest.FromString(snappy.uncompress(snappy.compress(req.SerializeToString())))
    got = back.streams[0].entries[0]
    assert back.streams[0].labels == '{job="app"}'
    assert got.timestamp.ToNanoseconds() == 1_700_000_000_123_456_789
    assert (got.line, got.structuredMetadata[0].value) == ("hello", "abc")


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16384, 100_000])
def test_snappy_declared_length(size: int) -> None:
    body = snappy.compress(b"x" * size)
    assert snappy_declared_length(body) == size


@pytest.mark.parametrize("body", [b"", b"\x80", b"\xff\xff\xff\xff", b"\xff\xff\xff\xff\x7f", b"\x80" * 6])
def test_snappy_declared_length_rejects_bad_preambles(body: bytes) -> None:
    with pytest.raises(CodecError, match="preamble"):
        snappy_declared_length(body)


def build_request() -> remote_pb2.WriteRequest:
    req = remote_pb2.WriteRequest()
    req.timeseries.append(upb_series([("__name__", "up"), ("job", "a")], [(1000, 1.0), (2000, 0.0)]))
    ts = req.timeseries.add()
    ts.CopyFrom(upb_series([("__name__", "rpc"), ("job", "b")], [(1000, 2.5)]))
    ts.exemplars.add(value=1.0, timestamp=1000).labels.add(name="trace_id", value="t1")
    ts.histograms.add(count_int=3, sum=1.5, schema=0, timestamp=1000)
    req.metadata.add(type=remote_pb2.MetricMetadata.COUNTER, metric_family_name="rpc", help="calls")
    return req


def test_decode_counts_what_arrived() -> None:
    raw = build_request().SerializeToString()
    req, stats = decode_write_request(snappy.compress(raw), max_decoded_bytes=len(raw))
    assert (stats.series, stats.samples, stats.exemplars, stats.histograms, stats.metadata) == (2, 3, 1, 1, 1)
    assert stats.decoded_bytes == len(raw)
    assert req.timeseries[1].labels[0].value == "rpc"


def test_decode_refuses_oversize_before_decompressing() -> None:
    bomb = encode_varint(2_500_000_000) + b"\x00" * 16  # declares 2.5 GB, carries nothing
    with pytest.raises(TooLarge) as info:
        decode_write_request(bomb, max_decoded_bytes=10 << 20)
    assert (info.value.declared, info.value.limit) == (2_500_000_000, 10 << 20)
    assert isinstance(info.value, CodecError)
    raw = build_request().SerializeToString()
    with pytest.raises(TooLarge):
        decode_write_request(snappy.compress(raw), max_decoded_bytes=len(raw) - 1)


def test_decode_rejects_corrupt_snappy_and_protobuf() -> None:
    with pytest.raises(CodecError, match="snappy") as info:
        decode_write_request(b"\x10" + b"\xff" * 8, max_decoded_bytes=1 << 20)
    assert not isinstance(info.value, TooLarge)
    with pytest.raises(CodecError, match="protobuf"):
        decode_write_request(snappy.compress(b"\x0a\x05ab"), max_decoded_bytes=1 << 20)
    framed = b"\xff\x06\x00\x00sNaPpY"  # the framed format must not be accepted
    with pytest.raises(CodecError):
        decode_write_request(framed, max_decoded_bytes=1 << 20)


LABEL_SETS = [
    [],
    [("__name__", "up")],
    [("__name__", "x"), ("empty", ""), ("unicode", "\u00e9t\u00e9 \u2603")],
    [("__name__", "long"), ("v", "y" * 300), ("w" * 200, "z")],
]
SAMPLE_SETS = [
    [(1_700_000_000_000, 1.5)],
    [(0, 0.0)],
    [(-5, -0.0)],
    [(1, STALE_NAN), (2, math.inf), (3, -math.inf), (2**63 - 1, 1e308)],
    [],
]


@pytest.mark.parametrize("labels", LABEL_SETS)
@pytest.mark.parametrize("samples", SAMPLE_SETS)
def test_hand_encoding_is_byte_identical_to_upb(labels: list[tuple[str, str]],
                                                samples: list[tuple[int, float]]) -> None:
    expected = remote_pb2.WriteRequest(timeseries=[upb_series(labels, samples)]).SerializeToString()
    assert encode_timeseries(encode_labels(labels), samples) == expected


def test_concatenated_timeseries_form_a_write_request() -> None:
    series = [[("__name__", f"m{i}"), ("i", str(i))] for i in range(300)]
    body = b"".join(encode_timeseries(encode_labels(s), [(1000 + i, float(i))]) for i, s in enumerate(series))
    req, stats = decode_write_request(snappy.compress(body), 1 << 24)
    assert (stats.series, stats.samples) == (300, 300)
    assert [(lb.name, lb.value) for lb in req.timeseries[299].labels] == series[299]
    assert req.timeseries[7].samples[0].timestamp == 1007
    assert math.isnan(remote_pb2.Sample.FromString(encode_sample(1, STALE_NAN)[2:]).value)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varint_roundtrip(value: int) -> None:
    encoded = encode_varint(value)
    decoded, pos = read_varint(encoded, 0)
    assert pos == len(encoded)
    assert decoded == value % (1 << 64)
    with pytest.raises(CodecError):
        read_varint(encoded[:-1], 0)


def labels_of(ts: remote_pb2.TimeSeries) -> list[tuple[str, str]]:
    return [(lb.name, lb.value) for lb in ts.labels]


def test_rewrite_adds_external_labels_sorted_and_keeps_the_rest() -> None:
    req = build_request()
    req.timeseries[0].labels.add(name="zone", value="own")  # the series' own value must win
    raw = req.SerializeToString()
    rewriter = SeriesRewriter({"zone": "external", "cluster": "c1"})
    out = remote_pb2.WriteRequest.FromString(rewriter.rewrite(raw))
    assert labels_of(out.timeseries[0]) == [("__name__", "up"), ("cluster", "c1"), ("job", "a"),
                                            ("zone", "own")]
    assert labels_of(out.timeseries[1]) == [("__name__", "rpc"), ("cluster", "c1"), ("job", "b"),
                                            ("zone", "external")]
    for got, orig in zip(out.timeseries, req.timeseries, strict=True):
        assert list(got.samples) == list(orig.samples)
        assert list(got.exemplars) == list(orig.exemplars)  # exemplar labels get no external labels
        assert list(got.histograms) == list(orig.histograms)
    assert list(out.metadata) == list(req.metadata)


def test_rewrite_matches_a_upb_rebuild_and_applies_write_relabel() -> None:
    series = [[("__name__", "m"), ("container", c), ("pod", f"p{i}")]
              for i, c in enumerate(["app", "istio-proxy", "app", "sidecar"])]
    raw = b"".join(encode_timeseries(encode_labels(s), [(1000, float(i))]) for i, s in enumerate(series))
    rules = [RelabelConfig(source_labels=["container"], regex="istio-.*", action="drop"),
             RelabelConfig(regex="pod", action="labeldrop"),
             RelabelConfig(source_labels=["cluster"], target_label="region", replacement="eu-$1")]
    rewriter = SeriesRewriter({"cluster": "c1"}, rules)
    got = rewriter.rewrite(raw)
    expected = remote_pb2.WriteRequest()
    for i, s in enumerate(series):
        if dict(s)["container"] == "istio-proxy":
            continue
        merged = {**dict(s), "cluster": "c1", "region": "eu-c1"}
        del merged["pod"]
        expected.timeseries.append(upb_series(sorted(merged.items()), [(1000, float(i))]))
    assert got == expected.SerializeToString()
    assert rewriter.dropped_series == 1
    assert snappy.uncompress(rewriter.rewrite_compressed(snappy.compress(raw))) == got


def test_rewrite_handles_labels_after_samples() -> None:
    # Legal protobuf: repeated fields may interleave. Build a TimeSeries with a label after the sample.
    ts_body = (encode_labels([("a", "1")]) + encode_sample(5, 2.0) + encode_labels([("b", "2")]))
    raw = b"\x0a" + encode_varint(len(ts_body)) + ts_body
    out = remote_pb2.WriteRequest.FromString(SeriesRewriter({"c": "3"}).rewrite(raw))
    assert labels_of(out.timeseries[0]) == [("a", "1"), ("b", "2"), ("c", "3")]
    assert out.timeseries[0].samples[0].value == 2.0


def test_rewrite_cache_is_keyed_on_label_bytes() -> None:
    rewriter = SeriesRewriter({"cluster": "c1"}, max_cached_series=2)
    key = encode_labels([("__name__", "up")])
    first = rewriter.label_bytes(key)
    assert rewriter.label_bytes(key) is first
    rewriter.label_bytes(encode_labels([("__name__", "a")]))
    rewriter.label_bytes(encode_labels([("__name__", "b")]))  # over the bound: the cache starts again
    assert rewriter.label_bytes(key) == first


def test_rewrite_passthrough_and_errors() -> None:
    raw = build_request().SerializeToString()
    body = snappy.compress(raw)
    idle = SeriesRewriter()
    assert not idle.active
    assert idle.rewrite(raw) is raw
    assert idle.rewrite_compressed(body) is body
    active = SeriesRewriter({"x": "y"})
    with pytest.raises(CodecError):
        active.rewrite(raw[:-3])
    with pytest.raises(CodecError):
        active.rewrite(b"\x0a\x7f\x0a")
    with pytest.raises(CodecError, match="snappy"):
        active.rewrite_compressed(b"\x10\xff\xff")
