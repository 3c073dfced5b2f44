"""remote_write fuzzing against a live node with a real Prometheus receiver behind it.

Valid requests (random label names, Unicode values, floats, several samples per series) are all answered 204
and every acknowledged sample reaches Prometheus. Malformed ones (mutated protobuf, random bytes, bad snappy,
wrong wire types, invalid UTF-8) get a 4xx, no reset; one that is acknowledged must decode as the sender's
own peer decodes it, and the good requests around them still all arrive (nothing counted failed).
"""

from __future__ import annotations

import time
import uuid

import pytest
import snappy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.metrics.receiver import DEFAULT_MAX_DECODED_BYTES
from service.metrics.remote.batch import count
from service.metrics.remote.codec import encode_labels, encode_timeseries
from service.proto import remote_pb2
from service.proto.wire import CodecError, snappy_declared_length
from tests.fuzz.client import send
from tests.fuzz.conftest import RW_INSTANCE, FuzzEnv
from tests.fuzz.wire import check
from tests.helpers.e2e_helpers import RW_HEADERS, WRITE, metric_sum
from tests.helpers.node_process import wait_for

pytestmark = pytest.mark.slow
PATH = WRITE.format(RW_INSTANCE)
FUZZ = settings(max_examples=60, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

label_names = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,12}\Z").filter(lambda n: not n.startswith("__"))
label_values = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
extra_labels = st.dictionaries(label_names, label_values, max_size=3)
values = st.floats(allow_nan=False, allow_infinity=True)
series_specs = st.lists(st.tuples(extra_labels, st.lists(values, min_size=1, max_size=3)), min_size=1, max_size=5)


class Ledger:
    """What the node acknowledged, per request, for the final comparison with Prometheus."""

    def __init__(self, run: str, name: str) -> None:
        self.run, self.name = run, name
        self.base_ms = int(time.time() * 1000) - 10 * 60_000
        self.next = 0
        self.acked: dict[int, int] = {}  # request number -> samples

    def body(self, specs: list[tuple[dict[str, str], list[float]]]) -> tuple[int, bytes, int]:
        k = self.next
        self.next += 1
        raw, samples = b"", 0
        for i, (extra, vals) in enumerate(specs):
            labels = sorted({**extra, "__name__": self.name, "run": self.run, "req": str(k), "s": str(i)}.items())
            points = [(self.base_ms + k * 10 + j, v) for j, v in enumerate(vals)]
            raw += encode_timeseries(encode_labels(labels), points)
            samples += len(points)
        return k, raw, samples

    def post_good(self, env: FuzzEnv, specs: list[tuple[dict[str, str], list[float]]]) -> None:
        k, raw, samples = self.body(specs)
        resp = send(env.node, "POST", PATH, snappy.compress(raw), RW_HEADERS)
        assert resp.status == 204, f"valid request answered {resp.status}: {resp.text}"
        self.acked[k] = samples

    def held(self, env: FuzzEnv) -> dict[int, int]:
        result = env.prom.query(f'count by (req) (count_over_time({self.name}{{run="{self.run}"}}[1h]))')
        return {int(r["metric"]["req"]): int(r["value"][1]) for r in result}

    def samples_held(self, env: FuzzEnv) -> dict[int, int]:
        result = env.prom.query(f'sum by (req) (count_over_time({self.name}{{run="{self.run}"}}[1h]))')
        return {int(r["metric"]["req"]): int(r["value"][1]) for r in result}

    def assert_delivered(self, env: FuzzEnv) -> None:
        state: dict[str, dict[int, int]] = {}

        def complete() -> bool:
            state["held"] = held = self.samples_held(env)
            return held == self.acked

        try:
            wait_for(complete, 30, interval=0.5, what="every acknowledged sample at Prometheus")
        except AssertionError:
            held = state.get("held", {})
            diff = {k: (n, held.get(k)) for k, n in self.acked.items() if held.get(k) != n}
            raise AssertionError(f"{len(diff)} of {len(self.acked)} acknowledged requests differ at Prometheus "
                                 f"(acked, held): {list(diff.items())[:5]}") from None


def test_valid_writes_are_all_acknowledged_and_all_arrive(fuzz_env: FuzzEnv) -> None:
    ledger = Ledger(uuid.uuid4().hex[:8], "fuzz_ok")
    # The node is shared with the other tests of this module.
    failed_before = metric_sum(fuzz_env.node, "prometheus_remote_storage_samples_failed_total")

    @FUZZ
    @given(series_specs)
    def one(specs: list[tuple[dict[str, str], list[float]]]) -> None:
        ledger.post_good(fuzz_env, specs)

    one()
    assert len(ledger.acked) >= 30
    ledger.assert_delivered(fuzz_env)
    assert metric_sum(fuzz_env.node, "prometheus_remote_storage_samples_failed_total") == failed_before


# --- malformed bodies ---------------------------------------------------------------------------------------

def _valid_raw() -> bytes:
    return encode_timeseries(encode_labels([("__name__", "fuzz_bad"), ("x", "y")]), [(int(time.time() * 1000), 1.0)])


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, bytes]:
    """(kind, body): every body is sent with the snappy/protobuf headers."""
    raw = _valid_raw()
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "random-proto", "random-bytes", "wire-type",
                                 "bad-utf8"]))
    if kind == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    elif kind == "truncate":
        raw = raw[:draw(st.integers(1, len(raw) - 1))]
    elif kind == "insert":
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + draw(st.binary(min_size=1, max_size=8)) + raw[i:]
    elif kind == "random-proto":
        raw = draw(st.binary(min_size=1, max_size=200))
    elif kind == "random-bytes":
        return kind, draw(st.binary(min_size=1, max_size=200))  # not snappy at all
    elif kind == "wire-type":  # a good series, then field 1 (timeseries) again as a varint
        raw += b"\x08" + bytes([draw(st.integers(0, 127))])
    else:  # a lone byte ≥ 0x80 in a label value, an exemplar label or metadata help text
        lone = bytes([draw(st.integers(0x80, 0xFF))])
        where = draw(st.sampled_from(["label", "exemplar", "metadata"]))
        if where == "label":
            raw = encode_timeseries(encode_labels([("__name__", "fuzz_bad"), ("x", "\x00")]), [(1, 1.0)])
            raw = raw.replace(b"\x01\x00", b"\x01" + lone)
        elif where == "exemplar":
            ex = b"\x0a\x07\x0a\x01t\x12\x02a" + lone  # Exemplar.labels = {t="a<lone>"}
            series = encode_labels([("__name__", "fuzz_bad"), ("x", "y")]) + b"\x1a" + bytes([len(ex)]) + ex
            raw = b"\x0a" + bytes([len(series)]) + series
        else:
            meta = b"\x08\x02\x12\x08fuzz_bad\x22\x02h" + lone
            raw += b"\x1a" + bytes([len(meta)]) + meta
    return kind, snappy.compress(raw)


MAX_DECODED = DEFAULT_MAX_DECODED_BYTES


def declared_length(body: bytes) -> int:
    """The decoded length a snappy block's preamble declares (-1 when it has no valid preamble)."""
    try:
        return snappy_declared_length(body)
    except CodecError:
        return -1


def moves_the_peers_clock(body: bytes) -> bool:
    """A valid body whose sample is more than a minute from now (a flipped timestamp byte). The node rightly
    accepts and forwards it, but the real Prometheus behind it then moves its head's time far ahead and refuses
    every later good sample as out of bounds (one run lost 59 of 120 good requests that way): a property of
    the peer, so such bodies are not sent."""
    if not reference_decodes(body):
        return False
    now = time.time() * 1000
    req = remote_pb2.WriteRequest.FromString(snappy.uncompress(body))
    stamps = [s.timestamp for ts in req.timeseries for s in ts.samples]
    stamps += [h.timestamp for ts in req.timeseries for h in ts.histograms]
    return any(abs(t - now) > 60_000 for t in stamps)


def reference_decodes(body: bytes) -> bool:
    """Whether the sender's peer could use the body as sent on (strict protobuf, UTF-8 strings)."""
    try:
        check(snappy.uncompress(body))
    except Exception:  # any decode failure: snappy, wire types, truncation or UTF-8
        return False
    return True


def test_malformed_writes_are_refused_and_cost_the_good_ones_nothing(fuzz_env: FuzzEnv) -> None:
    ledger = Ledger(uuid.uuid4().hex[:8], "fuzz_mixed")
    lying: list[tuple[str, bytes]] = []
    # A mutation can leave a valid body (a flipped byte in a timestamp or value): the node rightly accepts
    # it, and Prometheus may refuse its sample (out of order against fuzz_bad's other samples, or out of
    # bounds). Only those samples may fail at Prometheus; the good requests' must all arrive.
    valid_mutants = 0
    failed_before = metric_sum(fuzz_env.node, "prometheus_remote_storage_samples_failed_total")

    @FUZZ
    @given(malformed(), series_specs)
    def one(bad: tuple[str, bytes], specs: list[tuple[dict[str, str], list[float]]]) -> None:
        kind, body = bad
        assume(not moves_the_peers_clock(body))
        ledger.post_good(fuzz_env, specs)
        resp = send(fuzz_env.node, "POST", PATH, body, RW_HEADERS)
        oversized = declared_length(body) > MAX_DECODED  # random bytes can declare a huge snappy length: 413
        assert resp.status in ((413,) if oversized else (204, 400)), f"{kind}: answered {resp.status} {resp.text}"
        if resp.status == 204:
            if reference_decodes(body):
                nonlocal valid_mutants
                valid_mutants += count(snappy.uncompress(body)).samples
            else:
                lying.append(bad)
        ledger.post_good(fuzz_env, specs)

    one()
    assert not lying, f"{len(lying)} malformed bodies acknowledged, e.g. {lying[:3]}"
    ledger.assert_delivered(fuzz_env)
    failed = metric_sum(fuzz_env.node, "prometheus_remote_storage_samples_failed_total") - failed_before
    assert failed <= valid_mutants
