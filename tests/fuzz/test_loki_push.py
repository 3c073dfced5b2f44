"""Loki push fuzzing (protobuf and JSON, every Content-Encoding) against a live node whose logs instance
forwards to tests/helpers/loki_capture.py (a stand-in: no Loki runs here).

Valid pushes are all answered 204 and each acknowledged line arrives downstream exactly once, with its
timestamp, and is searchable. Malformed pushes get a 4xx, no reset; the good pushes around them all arrive.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib
from collections import Counter

import pytest
import snappy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.proto.push_pb2 import PushRequest
from tests.fuzz.client import send
from tests.fuzz.conftest import FuzzEnv
from tests.helpers.node_process import wait_for

pytestmark = pytest.mark.slow
PUSH = "/loki/api/v1/push"
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

label_names = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,12}\Z").filter(lambda n: not n.startswith("__"))
label_values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1,
                       max_size=30)
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\r\x00"), max_size=60)
streams_spec = st.lists(st.tuples(st.dictionaries(label_names, label_values, min_size=0, max_size=3),
                                  st.lists(st.tuples(texts, st.integers(0, 3_600_000_000_000)), min_size=1,
                                           max_size=4)), min_size=1, max_size=3)
formats = st.sampled_from(["proto", "json", "json-gzip", "json-deflate", "proto-gzip", "json-meta"])


def quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def encode(fmt: str, streams: list[tuple[dict[str, str], list[tuple[str, int]]]]) -> tuple[bytes, dict[str, str]]:
    """A push body and its headers; ``streams`` hold (labels, [(line, ts_ns)])."""
    if fmt.startswith("proto"):
        req = PushRequest()
        for labels, entries in streams:
            s = req.streams.add()
            s.labels = "{" + ", ".join(f"{k}={quote(v)}" for k, v in sorted(labels.items())) + "}"
            for line, ts in entries:
                e = s.entries.add()
                e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 10**9)
                e.line = line
        body, headers = snappy.compress(req.SerializeToString()), {"Content-Type": "application/x-protobuf"}
    else:
        meta = fmt == "json-meta"
        doc = {"streams": [{"stream": labels, "values": [[str(ts), line, {"m": "v"}] if meta else [str(ts), line]
                                                         for line, ts in entries]} for labels, entries in streams]}
        body, headers = json.dumps(doc).encode(), {"Content-Type": "application/json"}
    if fmt.endswith("gzip"):
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif fmt.endswith("deflate"):
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    return body, headers


class LogLedger:
    """Lines the node acknowledged (each unique: run id, push number, entry number), with timestamps."""

    def __init__(self) -> None:
        self.run = "fz" + uuid.uuid4().hex[:10]
        self.base_ns = (int(time.time()) - 2 * 3600) * 10**9
        self.next = 0
        self.acked: dict[str, int] = {}

    def push_good(self, env: FuzzEnv, fmt: str, spec: list[tuple[dict[str, str], list[tuple[str, int]]]]) -> None:
        k = self.next
        self.next += 1
        streams, lines = [], {}
        for i, (labels, entries) in enumerate(spec):
            rows = []
            for j, (text, offset) in enumerate(entries):
                line = f"{self.run} {k}-{i}-{j} {text}"
                rows.append((line, self.base_ns + offset))
                lines[line] = self.base_ns + offset
            streams.append(({**labels, "fuzz": "loki", "s": str(i)}, rows))
        body, headers = encode(fmt, streams)
        resp = send(env.node, "POST", PUSH, body, headers)
        assert resp.status == 204, f"valid {fmt} push answered {resp.status}: {resp.text}"
        self.acked.update(lines)

    def assert_delivered(self, env: FuzzEnv) -> None:
        def arrived() -> Counter[str]:
            with env.loki.capture.lock:
                return Counter(e.line for e in env.loki.capture.entries if e.line.startswith(self.run + " "))

        wait_for(lambda: set(arrived()) >= set(self.acked), 30, interval=0.2,
                 what=f"{len(self.acked)} acknowledged lines at the capture server")
        got = arrived()
        assert set(got) == set(self.acked), f"lines never acknowledged arrived: {set(got) - set(self.acked)}"
        twice = [line for line, n in got.items() if n > 1]
        assert not twice, f"{len(twice)} lines arrived more than once, e.g. {twice[:3]}"
        with env.loki.capture.lock:
            stamps = {e.line: e.ts_ns for e in env.loki.capture.entries if e.line in self.acked}
        assert stamps == self.acked


def test_valid_pushes_are_acknowledged_and_arrive_once(fuzz_env: FuzzEnv) -> None:
    ledger = LogLedger()

    @FUZZ
    @given(formats, streams_spec)
    def one(fmt: str, spec: list[tuple[dict[str, str], list[tuple[str, int]]]]) -> None:
        ledger.push_good(fuzz_env, fmt, spec)

    one()
    assert len(ledger.acked) >= 60
    ledger.assert_delivered(fuzz_env)

    def searchable() -> int:
        resp = send(fuzz_env.node, "GET", f"/api/logs/search?query={ledger.run}&limit=1&fromTimestamp=0")
        return resp.json()["data"]["total"] if resp.status == 200 else -1

    wait_for(lambda: searchable() == len(ledger.acked), 30, interval=0.3,
             what=f"{len(ledger.acked)} acknowledged lines searchable (last: {searchable()})")


# --- malformed pushes ---------------------------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                           max_leaves=12)


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """(kind, body, headers) of a push a receiver should refuse (or may accept only if it is whole)."""
    good, headers = encode("proto", [({"a": "b"}, [("bad line", 1_700_000_000 * 10**9)])])
    raw = snappy.uncompress(good)
    kind = draw(st.sampled_from(["proto-flip", "proto-truncate", "proto-random", "not-snappy", "json-random",
                                 "json-shape", "json-truncated", "bad-encoding", "gzip-garbage",
                                 "bad-labels"]))
    if kind == "proto-flip":
        i = draw(st.integers(0, len(raw) - 1))
        return kind, snappy.compress(raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]), headers
    if kind == "proto-truncate":
        return kind, snappy.compress(raw[:draw(st.integers(1, len(raw) - 1))]), headers
    if kind == "proto-random":
        return kind, snappy.compress(draw(st.binary(min_size=1, max_size=100))), headers
    if kind == "not-snappy":
        return kind, draw(st.binary(min_size=1, max_size=100)), headers
    json_headers = {"Content-Type": "application/json"}
    if kind == "json-random":
        return kind, json.dumps(draw(json_values)).encode(), json_headers
    if kind == "json-shape":  # the right keys, wrong types or values
        ts = draw(st.one_of(st.integers(), texts, st.none(), st.floats(allow_nan=False)))
        value = draw(st.one_of(st.just([str(ts), "l"]), st.lists(json_values, max_size=4), json_values))
        stream = draw(st.one_of(st.just({"a": "b"}), json_values))
        return kind, json.dumps({"streams": [{"stream": stream, "values": [value]}]}).encode(), json_headers
    if kind == "json-truncated":
        doc = json.dumps({"streams": [{"stream": {"a": "b"}, "values": [["1700000000000000000", "l"]]}]})
        return kind, doc[:draw(st.integers(1, len(doc) - 1))].encode(), json_headers
    if kind == "bad-encoding":
        enc = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10))
        if enc.lower() in ("gzip", "deflate", "snappy", "identity"):
            enc = "br"
        return kind, good, {**headers, "Content-Encoding": enc}
    if kind == "gzip-garbage":
        return kind, draw(st.binary(max_size=100)), {**json_headers, "Content-Encoding": "gzip"}
    labels = draw(st.sampled_from(["", "{", "{a=b}", '{a="b"', '{a="b",a="c"}', '{1a="b"}', '{a="\\q"}',
                                   "not labels"]))
    req = PushRequest.FromString(raw)
    req.streams[0].labels = labels
    return kind, snappy.compress(req.SerializeToString()), headers


def test_malformed_pushes_are_refused_and_cost_the_good_ones_nothing(fuzz_env: FuzzEnv) -> None:
    ledger = LogLedger()
    acked_bad: list[str] = []

    @FUZZ
    @given(malformed(), formats, streams_spec)
    def one(bad: tuple[str, bytes, dict[str, str]], fmt: str,
            spec: list[tuple[dict[str, str], list[tuple[str, int]]]]) -> None:
        kind, body, headers = bad
        ledger.push_good(fuzz_env, fmt, spec)
        resp = send(fuzz_env.node, "POST", PUSH, body, headers)
        assert resp.status in (204, 400, 413, 415), f"{kind}: {resp.status} {resp.text}"
        if resp.status == 204:
            acked_bad.append(kind)
        else:
            assert resp.text.strip(), f"{kind}: a {resp.status} without a reason"
        ledger.push_good(fuzz_env, fmt, spec)

    one()
    ledger.assert_delivered(fuzz_env)
    assert fuzz_env.node.get("/-/healthy").status == 200
