"""Hand-encoded push bytes against upb: JSON pushes and re-stamped protobuf pushes must parse (with
``push_pb2``) to exactly the request the message-per-entry way builds."""

from __future__ import annotations

import random

import orjson
import pytest
import snappy

from service.http.errors import HTTPError
from service.logs.labels import format_labels
from service.logs.push import PushRules
from service.proto.push_pb2 import PushRequest
from service.proto.wire import encode_varint, read_varint
from service.relabel import RelabelConfig

NOW = 1_800_000_123_456_789_012
LIMIT = 100 << 20
JSON, PROTO = "application/json", "application/x-protobuf"


def json_doc(rng: random.Random) -> dict:
    """Streams with the awkward cases: metadata, empty lines and values, multi-byte text, long lines,
    timestamps with zero seconds or nanos."""
    streams = []
    for s in range(4):
        values: list = []
        for i in range(60):
            ts = rng.choice([0, 5, 999_999_999, 1_000_000_000, 1_700_000_000 * 10**9 + rng.randrange(10**9),
                             2**62 + i, 1_700_000_001 * 10**9])
            line = rng.choice(["", "x", "ünïcødé ✓ " * rng.randrange(1, 4), "L" * rng.choice([127, 128, 20000]),
                               f"level=info n={i}"])
            value: list = [str(ts), line]
            if i % 3 == 0:
                value.append({"trace_id": f"{i:032x}", "empty": "", "": "nameless", "ü": "v" * 200})
            elif i % 7 == 0:
                value.append(None)
            elif i % 11 == 0:  # lengths past two varint bytes
                value.append({"n" * 500: "v" * 16200, "e" * 16384: "", "s": "x" * 20000})
            values.append(value)
        values.insert(3, None)
        streams.append({"stream": {"app": f"a{s}", "z": "1", "q": 'with "quotes"\n'}, "values": values})
    streams.append({"stream": {"app": "nothing"}, "values": []})
    streams.append(None)
    return {"streams": streams}


def reference_json(doc: dict, rules: PushRules, stamp: bool) -> PushRequest:
    """The request as upb builds it, value by value."""
    req = PushRequest()
    for s in doc["streams"]:
        if s is None:
            continue
        labels = rules.process_labels(format_labels(s["stream"]))
        stream = req.streams.add()
        stream.labels = labels if isinstance(labels, str) else ""
        for v in s["values"]:
            if v is None:
                continue
            e = stream.entries.add()
            ts = NOW if stamp else int(v[0])
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 10**9)
            e.line = v[1]
            for k, x in (v[2] or {}).items() if len(v) > 2 else ():
                e.structuredMetadata.add(name=k, value=x)
    return req


def test_varint_matches_upb_and_decodes() -> None:
    assert encode_varint(0) == b"\x00"
    for n in [1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28, 999_999_999, 2**35 + 5, 2**63 - 1, 2**64 - 1]:
        req = PushRequest()
        req.streams.add().hash = n
        assert req.SerializeToString() == b"\x0a" + bytes((len(encode_varint(n)) + 1,)) + b"\x18" + encode_varint(n)
        assert read_varint(encode_varint(n), 0) == (n, len(encode_varint(n)))


@pytest.mark.parametrize("stamp", [False, True])
def test_json_push_bytes_parse_to_the_upb_request(stamp: bool) -> None:
    doc = json_doc(random.Random(7))
    rules = PushRules(use_incoming_timestamp=not stamp)
    accepted = rules.ingest(orjson.dumps(doc), JSON, None, LIMIT, now_ns=NOW)
    expected = reference_json(doc, rules, stamp)
    got = PushRequest.FromString(snappy.uncompress(accepted.body))
    assert got == expected
    assert accepted.request() == expected
    assert accepted.entries == sum(len(s.entries) for s in expected.streams) == 4 * 60
    assert accepted.streams == 5 and not accepted.errors
    if not stamp:  # incoming timestamps: byte for byte what upb serializes
        assert snappy.uncompress(accepted.body) == expected.SerializeToString()


def test_json_labels_with_rules_quotes_and_gzip() -> None:
    import gzip

    doc = {"streams": [{"stream": {"app": "x", "q": 'a"b\n'}, "values": [["1", "one", {"k": "v"}]]},
                       {"stream": {"app": "dropme"}, "values": [["2", "two"]]}]}
    rules = PushRules({"env": "prod"}, [RelabelConfig(source_labels=["app"], regex="dropme", action="drop")])
    accepted = rules.ingest(gzip.compress(orjson.dumps(doc)), JSON, "gzip", LIMIT, now_ns=NOW)
    got = accepted.request()
    assert [s.labels for s in got.streams] == ['{app="x", env="prod", q="a\\"b\\n"}']
    assert got.streams[0].entries[0].timestamp.seconds == NOW // 10**9
    assert got.streams[0].entries[0].structuredMetadata[0].name == "k"
    assert accepted.entries == 1


@pytest.mark.parametrize(("body", "message"), [
    (b"[1]", "expect {"),
    (b'{"streams": {}}', "streams is not an array"),
    (b'{"streams": [{"stream": {"a": 1}, "values": []}]}', "stream labels must be an object of strings"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["1"]]}]}', "a value must be [ts, line]"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": 5}]}', "a value must be [ts, line]"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": "ab"}]}', "a value must be [ts, line]"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [[1, "x"]]}]}', "can't find closing"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["1", 2]]}]}', "the log line must be a string"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["x1", "x"]]}]}', 'invalid timestamp "x1"'),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["-1", "x"]]}]}', 'invalid timestamp "-1"'),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["99999999999999999999999999999", "x"]]}]}',
     'strconv.ParseInt: parsing "99999999999999999999999999999": value out of range'),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["9223372036854775808", "x"]]}]}', "value out of range"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["' + b"9" * 5000 + b'", "x"]]}]}', "value out of range"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["1_000", "x"]]}]}', 'invalid timestamp "1_000"'),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [[" 12", "x"]]}]}', 'invalid timestamp " 12"'),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["1", "x", {"m": 1}]]}]}', "structured metadata"),
    (b'{"streams": [{"stream": {"a": "b"}, "values": [["1", "x"]]}, 5]}', "stream is not an object"),
])
def test_json_errors_reject_the_whole_push(body: bytes, message: str) -> None:
    with pytest.raises(HTTPError) as err:
        PushRules().ingest(body, JSON, None, LIMIT)
    assert err.value.status == 400
    assert err.value.message.startswith("loghttp.PushRequest.ReadJSON: ") and message in err.value.message


def test_json_largest_timestamps_are_kept() -> None:
    """int64 nanoseconds, as Loki parses them: the largest value and a zero-padded one are in range."""
    body = orjson.dumps({"streams": [{"stream": {"a": "b"}, "values": [
        ["9223372036854775807", "max"], ["0" * 40 + "5", "padded"]]}]})
    got = PushRules(use_incoming_timestamp=True).ingest(body, JSON, None, LIMIT).request()
    assert [(e.timestamp.seconds, e.timestamp.nanos) for e in got.streams[0].entries] == [
        (9223372036, 854775807), (0, 5)]


def test_nul_in_a_label_name_skips_the_stream_with_400() -> None:
    """A NUL in a label name (JSON object key, or a quoted name in a protobuf label string) is refused for
    that stream; the others are kept, and the answer names the problem."""
    body = orjson.dumps({"streams": [{"stream": {"a\x00b": "x"}, "values": [["1", "bad"]]},
                                     {"stream": {"ok": "y"}, "values": [["1", "good"]]}]})
    accepted = PushRules().ingest(body, JSON, None, LIMIT)
    assert accepted.streams == 1 and len(accepted.errors) == 1 and "NUL" in accepted.errors[0]
    req = PushRequest()
    req.streams.add(labels='{"a\\x00b"="x"}').entries.add(line="bad")
    accepted = PushRules().ingest(snappy.compress(req.SerializeToString()), PROTO, None, LIMIT)
    assert accepted.streams == 0 and "NUL" in accepted.errors[0]


@pytest.mark.parametrize(("seconds", "nanos", "message"), [
    (2**62, 0, "after 10000-01-01"), (253402300800, 0, "after 10000-01-01"),
    (-62135596801, 0, "before 0001-01-01"), (0, -1, "nanos not in range"), (0, 10**9, "nanos not in range"),
])
def test_protobuf_timestamps_outside_loki_range_are_400(seconds: int, nanos: int, message: str) -> None:
    req = PushRequest()
    e = req.streams.add(labels='{a="b"}').entries.add(line="x")
    e.timestamp.seconds, e.timestamp.nanos = seconds, nanos
    with pytest.raises(HTTPError) as err:
        PushRules(use_incoming_timestamp=True).ingest(snappy.compress(req.SerializeToString()), PROTO, None, LIMIT)
    assert err.value.status == 400 and message in err.value.message
    e.timestamp.seconds, e.timestamp.nanos = 253402300799, 999_999_999  # the last valid instant
    PushRules(use_incoming_timestamp=True).ingest(snappy.compress(req.SerializeToString()), PROTO, None, LIMIT)


def test_json_empty_bodies_store_nothing() -> None:
    for body in (b"null", b"{}", b'{"streams": []}', b'{"streams": null}'):
        accepted = PushRules().ingest(body, JSON, None, LIMIT)
        assert (accepted.streams, accepted.entries, accepted.body) == (0, 0, b"")


def field(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + encode_varint(len(data)) + data


def awkward_proto() -> bytes:
    """A valid PushRequest no Go or upb encoder writes: fields out of order and repeated, unknown fields,
    empty entries, 3-byte entry lengths, a hash, the format field."""
    req = PushRequest()
    s = req.streams.add()
    s.labels = '{app="a"}'
    s.hash = 77
    for i, line in enumerate(["short", "m" * 200, "b" * 70000, ""]):
        e = s.entries.add()
        e.timestamp.seconds, e.timestamp.nanos = 1_600_000_000 + i, i
        e.line = line
        e.structuredMetadata.add(name="k", value=str(i))
    s.entries.add()  # an empty entry
    good = req.SerializeToString()
    ts = field(0x0A, b"\x08\x05\x10\x06")
    odd_entry = field(0x12, b"first") + ts + field(0x1A, field(0x0A, b"m") + field(0x12, b"v")) + ts
    stream2 = (field(0x0A, b'{app="old"}') + field(0x12, odd_entry) + field(0x0A, b'{app="b", x="y"}')
               + b"\x18\x05" + b"\xa8\x1f\x01" + field(0x12, ts))
    bad_labels = field(0x0A, b"{not labels")
    return good + field(0x0A, stream2) + field(0x0A, bad_labels + field(0x12, ts)) + field(0x12, b"loki") + b"\x20\x01"


def reference_proto(raw: bytes, rules: PushRules, stamp: bool) -> PushRequest:
    req = PushRequest.FromString(raw)
    for index in range(len(req.streams) - 1, -1, -1):
        stream = req.streams[index]
        labels = rules.process_labels(stream.labels)
        if not isinstance(labels, str) or not labels or labels.startswith("\x00"):
            del req.streams[index]
            continue
        stream.labels = labels
        for e in stream.entries if stamp else ():
            e.timestamp.seconds, e.timestamp.nanos = divmod(NOW, 10**9)
    return req


@pytest.mark.parametrize("stamp", [False, True])
@pytest.mark.parametrize("static", [{}, {"env": "prod"}])
def test_protobuf_rewrites_parse_to_the_upb_request(stamp: bool, static: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(*args: object) -> None:
        raise AssertionError("the byte-level rewrite gave up")

    monkeypatch.setattr(PushRules, "_restamp_upb", staticmethod(no_fallback))
    raw = awkward_proto()
    rules = PushRules(static, use_incoming_timestamp=not stamp)
    accepted = rules.ingest(snappy.compress(raw), PROTO, "snappy", LIMIT, now_ns=NOW)
    expected = reference_proto(raw, rules, stamp)
    got = PushRequest.FromString(snappy.uncompress(accepted.body))
    assert got == expected and accepted.request() == expected
    assert got.format == "loki" and got.streams[0].hash == 77
    env = ', env="prod"' if static else ""
    assert [s.labels for s in got.streams] == [f'{{app="a"{env}}}', f'{{app="b"{env}, x="y"}}']
    assert accepted.entries == 5 + 2 and accepted.streams == 2
    assert len(accepted.errors) == 1 and "not labels" in accepted.errors[0]
    if stamp:
        assert {(e.timestamp.seconds, e.timestamp.nanos) for s in got.streams for e in s.entries} == {
            divmod(NOW, 10**9)}


def test_protobuf_unchanged_is_stored_as_received() -> None:
    req = PushRequest()
    s = req.streams.add()
    s.labels = '{app="a", b="c"}'
    e = s.entries.add()
    e.line = "hello"
    body = snappy.compress(req.SerializeToString())
    accepted = PushRules(use_incoming_timestamp=True).ingest(body, PROTO, None, LIMIT)
    assert accepted.body is body and accepted.request() == req and accepted.entries == 1


def test_restamp_of_a_go_style_push_is_canonical() -> None:
    """Entries whose timestamp comes first (every real client) get the new one in place of it."""
    req = PushRequest()
    s = req.streams.add()
    s.labels = '{app="a"}'
    for i in range(3):
        e = s.entries.add()
        e.timestamp.seconds, e.timestamp.nanos = 1_700_000_000, i
        e.line = f"line {i}"
    accepted = PushRules().ingest(snappy.compress(req.SerializeToString()), PROTO, None, LIMIT, now_ns=NOW)
    raw = snappy.uncompress(accepted.body)
    expected = reference_proto(req.SerializeToString(), PushRules(), True)
    assert PushRequest.FromString(raw) == expected
    assert len(raw) == len(expected.SerializeToString())  # the old timestamps are gone, not shadowed


def test_timestamp_byte_scan_never_misses_a_bad_timestamp() -> None:
    """The byte scan that decides whether entries are checked one by one flags every out-of-range value,
    boundaries and random values alike; valid present-day times are not flagged."""
    from service.logs.wire import may_hold_bad_timestamp

    rng = random.Random(7)
    lo, hi = -62135596800, 253402300800

    def raw(seconds: int, nanos: int) -> bytes:
        req = PushRequest()
        e = req.streams.add(labels='{a="b"}').entries.add(line="x")
        e.timestamp.seconds, e.timestamp.nanos = seconds, nanos
        return req.SerializeToString()

    nanos = [0, 999_999_999, 10**9, 2**30 - 1, 2**30, 2**31 - 1, -1, -(2**31)]
    nanos += [rng.randrange(-(2**31), 2**31) for _ in range(5000)] + [10**9 + rng.randrange(-9999, 9999)
                                                                       for _ in range(5000)]
    for n in nanos:
        flagged = may_hold_bad_timestamp(raw(1_700_000_000, n))
        assert flagged or 0 <= n < 10**9, n
        assert not flagged or not 0 <= n < 10**9 or n >= 3 << 28, n
    for s in [hi - 1, hi, lo, lo - 1, 2**62, -1] + [rng.randrange(-(2**63), 2**63) for _ in range(5000)]:
        assert may_hold_bad_timestamp(raw(s, 0)) or lo <= s < hi, s
    assert not may_hold_bad_timestamp(raw(1_700_000_000 + rng.randrange(10**8), 123_456_789))


def test_suspect_bytes_in_lines_are_checked_and_kept() -> None:
    """A line whose bytes look like a bad timestamp only costs the entry-by-entry check."""
    req = PushRequest()
    e = req.streams.add(labels='{a="b"}').entries.add(line="\x10\u0080\u0080\u0080 \x08\u00ff\u00ff\u00ff")
    e.timestamp.seconds = 1_700_000_000
    accepted = PushRules(use_incoming_timestamp=True).ingest(snappy.compress(req.SerializeToString()), PROTO,
                                                             None, LIMIT)
    assert accepted.entries == 1 and not accepted.errors
