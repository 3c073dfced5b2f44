"""Pipeline stages: a table of every stage and option, config errors, and a combined pipeline."""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest

from service.config.errors import ConfigError
from service.logs.entry import Entry
from service.logs.stages import Pipeline
from service.logs.stages.common import DROPPED_LINES

T0 = 1_600_000_000_000_000_000     # the time the line was "read"
NOW = time.time_ns()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, ns: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000 + ns


def ts_case(name: str, value: str, fmt: str, want: int, **opts: Any) -> tuple[Any, ...]:
    """A timestamp case: the value comes in as a label, which seeds the extracted map."""
    stages = [{"timestamp": {"source": "raw", "format": fmt, **opts}}]
    return name, stages, {"raw": value}, "l", T0, ({"raw": value}, "l", want)


J = '{"level":"error","msg":"boom","n":3,"f":1.5,"ok":true,"nested":{"a":{"b":"deep"}},"arr":[1,{"x":"y"}],' \
    '"dotted.key":"dk","nil":null}'

# (id, stages, labels, line, timestamp) -> expected (labels, line, timestamp) or None when dropped
CASES: list[tuple[str, list[dict[str, Any]], dict[str, str], str, int, tuple[dict[str, str], str, int] | None]] = [
    # json
    ("json-simple", [{"json": {"expressions": {"level": "", "m": "msg"}}}, {"labels": {"level": "", "m": ""}}],
     {}, J, T0, ({"level": "error", "m": "boom"}, J, T0)),
    ("json-types", [{"json": {"expressions": {"n": "", "f": "", "ok": "", "nested": ""}}},
                    {"labels": {"n": "", "f": "", "ok": "", "nested": ""}}],
     {}, J, T0, ({"n": "3", "f": "1.5", "ok": "true", "nested": '{"a":{"b":"deep"}}'}, J, T0)),
    ("json-paths", [{"json": {"expressions": {"d": "nested.a.b", "x": "arr[1].x", "k": '"dotted.key"',
                                              "last": "arr[-1].x", "miss": "nested.zz"}}},
                    {"labels": {"d": "", "x": "", "k": "", "last": "", "miss": ""}}],
     {}, J, T0, ({"d": "deep", "x": "y", "k": "dk", "last": "y"}, J, T0)),
    ("json-source", [{"json": {"expressions": {"inner": "nested"}}},
                     {"json": {"expressions": {"v": "a.b"}, "source": "inner"}}, {"labels": {"v": ""}}],
     {}, J, T0, ({"v": "deep"}, J, T0)),
    ("json-malformed-kept", [{"json": {"expressions": {"a": ""}}}], {"s": "1"}, "not json", T0,
     ({"s": "1"}, "not json", T0)),
    ("json-malformed-dropped", [{"json": {"expressions": {"a": ""}, "drop_malformed": True}}], {}, "[1,2]", T0,
     None),
    # regex
    ("regex-groups", [{"regex": {"expression": r"^(?P<ip>\S+) (?P<verb>[A-Z]+) (?P<opt>x)?"}},
                      {"labels": {"ip": "", "verb": "", "opt": ""}}],
     {}, "10.0.0.1 GET /", T0, ({"ip": "10.0.0.1", "verb": "GET", "opt": ""}, "10.0.0.1 GET /", T0)),
    ("regex-source", [{"json": {"expressions": {"msg": ""}}}, {"regex": {"expression": "(?P<w>o+)", "source": "msg"}},
                      {"labels": {"w": ""}}], {}, J, T0, ({"w": "oo"}, J, T0)),
    ("regex-nomatch", [{"regex": {"expression": r"(?P<d>\d+)"}}, {"labels": {"d": ""}}], {}, "abc", T0,
     ({}, "abc", T0)),
    ("regex-re2-named", [{"regex": {"expression": r"(?<d>\d+)"}}, {"labels": {"d": ""}}], {}, "a42", T0,
     ({"d": "42"}, "a42", T0)),
    # labels / static_labels / labeldrop / labelallow
    ("labels-rename", [{"regex": {"expression": "(?P<x>.+)"}}, {"labels": {"renamed": "x"}}], {}, "v", T0,
     ({"renamed": "v"}, "v", T0)),
    ("labels-from-labels", [{"labels": {"copy": "app"}}], {"app": "a"}, "l", T0, ({"app": "a", "copy": "a"}, "l", T0)),
    ("static-labels", [{"static_labels": {"env": "prod", "app": "over", "empty": ""}}], {"app": "a"}, "l", T0,
     ({"app": "over", "env": "prod"}, "l", T0)),
    ("labeldrop", [{"labeldrop": ["a", "zz"]}], {"a": "1", "b": "2"}, "l", T0, ({"b": "2"}, "l", T0)),
    ("labelallow", [{"labelallow": ["a"]}], {"a": "1", "b": "2"}, "l", T0, ({"a": "1"}, "l", T0)),
    # output
    ("output", [{"json": {"expressions": {"msg": ""}}}, {"output": {"source": "msg"}}], {}, J, T0, ({}, "boom", T0)),
    ("output-missing", [{"output": {"source": "nope"}}], {}, "keep", T0, ({}, "keep", T0)),
    # tenant
    ("tenant-value", [{"tenant": {"value": "team-a"}}], {}, "l", T0, ({"__tenant_id__": "team-a"}, "l", T0)),
    ("tenant-source", [{"json": {"expressions": {"t": "level"}}}, {"tenant": {"source": "t"}}], {}, J, T0,
     ({"__tenant_id__": "error"}, J, T0)),
    ("tenant-label", [{"tenant": {"label": "ns"}}], {"ns": "n1"}, "l", T0,
     ({"ns": "n1", "__tenant_id__": "n1"}, "l", T0)),
    ("tenant-source-missing", [{"tenant": {"source": "t"}}], {}, "l", T0, ({}, "l", T0)),
    # timestamp (the value comes in as a label: labels seed the extracted map)
    ts_case("ts-rfc3339", "2021-03-04T05:06:07+02:00", "RFC3339", utc(2021, 3, 4, 3, 6, 7)),
    ts_case("ts-rfc3339-frac", "2021-03-04T05:06:07.5Z", "RFC3339", utc(2021, 3, 4, 5, 6, 7, 500_000_000)),
    ts_case("ts-rfc3339nano", "2021-03-04T05:06:07.123456789Z", "RFC3339Nano",
            utc(2021, 3, 4, 5, 6, 7, 123456789)),
    ts_case("ts-unix", "1562708916", "Unix", 1562708916 * 10**9),
    ts_case("ts-unix-frac", "1562708916.414", "Unix", 1562708916_414_000_000),
    ts_case("ts-unixms", "1562708916414", "UnixMs", 1562708916_414_000_000),
    ts_case("ts-unixus", "1562708916414123", "UnixUs", 1562708916_414_123_000),
    ts_case("ts-unixns", "1562708916414123456", "UnixNs", 1562708916_414_123_456),
    ts_case("ts-go-layout", "2021-03-04 05:06:07", "2006-01-02 15:04:05", utc(2021, 3, 4, 5, 6, 7)),
    ts_case("ts-go-layout-millis-comma", "2021-03-04 05:06:07,250", "2006-01-02 15:04:05,000",
            utc(2021, 3, 4, 5, 6, 7, 250_000_000)),
    ts_case("ts-go-layout-apache", "04/Mar/2021:05:06:07 -0700", "02/Jan/2006:15:04:05 -0700",
            utc(2021, 3, 4, 12, 6, 7)),
    ts_case("ts-go-layout-12h", "Mar 4, 2021 5:06:07 PM", "Jan 2, 2006 3:04:05 PM", utc(2021, 3, 4, 17, 6, 7)),
    ts_case("ts-go-layout-yday", "2021.063 05:06", "2006.002 15:04", utc(2021, 3, 4, 5, 6)),
    ts_case("ts-rfc1123", "Thu, 04 Mar 2021 05:06:07 GMT", "RFC1123", utc(2021, 3, 4, 5, 6, 7)),
    ts_case("ts-rfc822z", "04 Mar 21 05:06 +0100", "RFC822Z", utc(2021, 3, 4, 4, 6)),
    ts_case("ts-location", "2021-07-04 05:06:07", "2006-01-02 15:04:05", utc(2021, 7, 4, 9, 6, 7),
            location="America/New_York"),
    ts_case("ts-location-ignored-with-zone", "2021-07-04T05:06:07Z", "RFC3339", utc(2021, 7, 4, 5, 6, 7),
            location="Asia/Tokyo"),
    ts_case("ts-fallback", "1562708916", "RFC3339", 1562708916 * 10**6, fallback_formats=["UnixMs", "Unix"]),
    ts_case("ts-skip-on-failure", "garbage", "RFC3339", T0, action_on_failure="skip"),
    ts_case("ts-fudge-without-history", "garbage", "RFC3339", T0),
    ("ts-missing-source", [{"timestamp": {"source": "nope", "format": "Unix"}}], {}, "l", T0, ({}, "l", T0)),
    # drop
    ("drop-expression-line", [{"drop": {"expression": "debug"}}], {}, "a debug line", T0, None),
    ("drop-expression-line-nomatch", [{"drop": {"expression": "debug"}}], {}, "info", T0, ({}, "info", T0)),
    ("drop-source-exists", [{"drop": {"source": "app"}}], {"app": "a"}, "l", T0, None),
    ("drop-source-missing", [{"drop": {"source": "zz"}}], {"app": "a"}, "l", T0, ({"app": "a"}, "l", T0)),
    ("drop-source-value", [{"drop": {"source": "app", "value": "a"}}], {"app": "a"}, "l", T0, None),
    ("drop-source-value-differs", [{"drop": {"source": "app", "value": "b"}}], {"app": "a"}, "l", T0,
     ({"app": "a"}, "l", T0)),
    ("drop-source-expression", [{"drop": {"source": "app", "expression": "^a.*"}}], {"app": "abc"}, "l", T0, None),
    ("drop-sources-separator", [{"drop": {"source": ["a", "b"], "separator": "|", "value": "1|2"}}],
     {"a": "1", "b": "2"}, "l", T0, None),
    ("drop-older-than", [{"drop": {"older_than": "1h"}}], {}, "old", NOW - 2 * 3600 * 10**9, None),
    ("drop-older-than-recent", [{"drop": {"older_than": "1h"}}], {}, "new", NOW, ({}, "new", NOW)),
    ("drop-longer-than", [{"drop": {"longer_than": 4}}], {}, "12345", T0, None),
    ("drop-longer-than-units", [{"drop": {"longer_than": "1KB"}}], {}, "x" * 1024, T0, ({}, "x" * 1024, T0)),
    ("drop-and-conditions", [{"drop": {"longer_than": 2, "expression": "z"}}], {}, "abc", T0, ({}, "abc", T0)),
    # match
    ("match-keep-runs-stages", [{"match": {"selector": '{app="a"}', "stages": [{"static_labels": {"m": "yes"}}]}}],
     {"app": "a"}, "l", T0, ({"app": "a", "m": "yes"}, "l", T0)),
    ("match-keep-skips-others", [{"match": {"selector": '{app=~"b|c"}', "stages": [{"static_labels": {"m": "y"}}]}}],
     {"app": "a"}, "l", T0, ({"app": "a"}, "l", T0)),
    ("match-drop", [{"match": {"selector": '{app!="b"} |= "noise"', "action": "drop"}}], {"app": "a"},
     "some noise", T0, None),
    ("match-drop-line-filter-nomatch", [{"match": {"selector": '{app="a"} !~ "err.*"', "action": "drop"}}],
     {"app": "a"}, "error", T0, ({"app": "a"}, "error", T0)),
    # container formats
    ("docker", [{"docker": {}}], {}, '{"log":"hello\\n","stream":"stderr","time":"2021-03-04T05:06:07.000000001Z"}',
     T0, ({"stream": "stderr"}, "hello\n", utc(2021, 3, 4, 5, 6, 7, 1))),
    ("cri", [{"cri": {}}], {}, "2021-03-04T05:06:07.5+00:00 stdout F hello world", T0,
     ({"stream": "stdout"}, "hello world", utc(2021, 3, 4, 5, 6, 7, 500_000_000))),
    ("match-nested-drop", [{"match": {"selector": '{app="a"}', "stages": [{"drop": {"expression": "x"}}]}}],
     {"app": "a"}, "x", T0, None),
]


@pytest.mark.parametrize(("stages", "labels", "line", "ts", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stage_table(stages: list[dict[str, Any]], labels: dict[str, str], line: str, ts: int,
                     want: tuple[dict[str, str], str, int] | None) -> None:
    entry = Entry(dict(labels), ts, line)
    out = Pipeline.from_config(stages).process(entry)
    assert entry == Entry(labels, ts, line)             # the input is never modified
    assert (None if out is None else (out.labels, out.line, out.timestamp_ns)) == want


def test_timestamp_without_year_gets_current_year() -> None:
    p = Pipeline.from_config([{"timestamp": {"source": "raw", "format": "Jan _2 15:04:05"}}])
    out = p.process(Entry({"raw": "Mar  4 05:06:07"}, T0, "l"))
    assert out is not None
    assert out.timestamp_ns == utc(time.gmtime().tm_year, 3, 4, 5, 6, 7)


def test_timestamp_fudge_uses_last_known_plus_one_ns_per_stream() -> None:
    p = Pipeline.from_config([{"regex": {"expression": "^(?P<t>\\S+)"}},
                              {"timestamp": {"source": "t", "format": "UnixNs"}}])
    stamps = [p.process(Entry({"s": s}, T0, line)).timestamp_ns  # type: ignore[union-attr]
              for s, line in [("a", "100 x"), ("a", "bad"), ("a", "bad"), ("b", "bad"), ("a", "200 y"), ("a", "z")]]
    assert stamps == [100, 101, 102, T0, 200, 201]


def test_drop_counter_reasons() -> None:
    def value(reason: str) -> float:
        return DROPPED_LINES.labels(reason)._value.get()

    before = value("too_long"), value("match_stage")
    p = Pipeline.from_config([{"drop": {"longer_than": 3, "drop_counter_reason": "too_long"}},
                              {"match": {"selector": '{a="1"}', "action": "drop"}}])
    assert p.process(Entry({}, T0, "long line")) is None
    assert p.process(Entry({"a": "1"}, T0, "ok")) is None
    assert p.process(Entry({"a": "2"}, T0, "ok")) is not None
    assert (value("too_long"), value("match_stage")) == (before[0] + 1, before[1] + 1)


def test_combined_pipeline_json_labels_timestamp_output_tenant() -> None:
    p = Pipeline.from_config([
        {"json": {"expressions": {"level": "", "ts": "time", "msg": "message", "org": "ctx.org"}}},
        {"labels": {"level": ""}},
        {"timestamp": {"source": "ts", "format": "RFC3339Nano"}},
        {"output": {"source": "msg"}},
        {"tenant": {"source": "org"}},
        {"drop": {"source": "level", "value": "debug"}},
    ])
    line = '{"level":"warn","time":"2022-01-02T03:04:05.000000006Z","message":"disk almost full","ctx":{"org":"o1"}}'
    out = p.process(Entry({"filename": "/var/log/app.log"}, T0, line, {"trace": "t1"}))
    assert out == Entry({"filename": "/var/log/app.log", "level": "warn", "__tenant_id__": "o1"},
                        utc(2022, 1, 2, 3, 4, 5, 6), "disk almost full", {"trace": "t1"})
    assert p.process(Entry({}, T0, '{"level":"debug","time":"2022-01-02T03:04:05Z","message":"m"}')) is None


@pytest.mark.parametrize(("stages", "message"), [
    ([{"bogus": {}}], "Unknown stage type: bogus"),
    ([{"json": {}, "regex": {}}], "only one key"),
    ([{"json": {"expressions": {}}}], "expressions are required"),
    ([{"json": {"expressions": {"a": "b | c"}}}], "could not compile JMES expression"),
    ([{"json": {"expressions": {"a": ""}, "sauce": "x"}}], "unknown option 'sauce'"),
    ([{"regex": {"expression": "(no names)"}}], "at least one named capture group"),
    ([{"regex": {"expression": "(?P<a>"}}], "could not compile regular expression"),
    ([{"labels": {"bad-name": ""}}], "invalid label name: bad-name"),
    ([{"output": {}}], "output source value is required"),
    ([{"tenant": {}}], "source, value or label config are required"),
    ([{"tenant": {"source": "a", "value": "b"}}], "mutually exclusive"),
    ([{"timestamp": {"format": "Unix"}}], "timestamp source value is required"),
    ([{"timestamp": {"source": "t"}}], "timestamp format is required"),
    ([{"timestamp": {"source": "t", "format": "Unix", "location": "Mars/Base"}}], "failed to load location"),
    ([{"timestamp": {"source": "t", "format": "Unix", "action_on_failure": "panic"}}], "invalid timestamp action"),
    ([{"drop": {}}], "must contain at least one of"),
    ([{"drop": {"value": "x", "longer_than": 1}}], "must contain `source` if `value`"),
    ([{"drop": {"source": "a", "value": "x", "expression": "y"}}], "cannot both be defined"),
    ([{"match": {"stages": [{"output": {"source": "a"}}]}}], "selector statement required"),
    ([{"match": {"selector": "app=a", "stages": [{"output": {"source": "a"}}]}}], "invalid selector"),
    ([{"match": {"selector": '{a="1"}'}}], "must contain at least one stage"),
    ([{"match": {"selector": '{a="1"}', "action": "drop", "stages": [{"output": {"source": "a"}}]}}],
     "cannot contains stages"),
    ([{"match": {"selector": '{a="1"}', "stages": [{"nope": {}}]}}], "Unknown stage type: nope"),
])
def test_config_errors(stages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Pipeline.from_config(stages)
