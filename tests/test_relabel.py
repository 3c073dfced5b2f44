"""Relabeling: Prometheus' relabel_test.go cases, Go template expansion, RE2 differences, validation."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.errors import ConfigError
from service.config.schema import loads
from service.relabel import RelabelConfig, Relabeler, hashmod, process


def rule(**kw: Any) -> RelabelConfig:
    cfg = RelabelConfig(**kw)
    cfg.check()
    return cfg


# (input, rules, expected output or None when dropped): the TestRelabel table of relabel_test.go.
CASES: list[tuple[str, dict[str, str], list[dict[str, Any]], dict[str, str] | None]] = [
    ("replace ${1}", {"a": "foo", "b": "bar", "c": "baz"},
     [dict(source_labels=["a"], regex="f(.*)", target_label="d", replacement="ch${1}-ch${1}")],
     {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"}),
    ("replace chained", {"a": "foo", "b": "bar", "c": "baz"},
     [dict(source_labels=["a", "b"], regex="f(.*);(.*)r", target_label="a", replacement="b${1}${2}m"),
      dict(source_labels=["c", "a"], regex="(b).*b(.*)ba(.*)", target_label="d", replacement="$1$2$2$3")],
     {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"}),
    ("drop then replace", {"a": "foo"},
     [dict(source_labels=["a"], regex=".*o.*", action="drop"),
      dict(source_labels=["a"], regex="f(.*)", target_label="d", replacement="ch$1-ch$1")], None),
    ("drop", {"a": "foo", "b": "bar"}, [dict(source_labels=["a"], regex=".*o.*", action="drop")], None),
    ("replace group", {"a": "abc"},
     [dict(source_labels=["a"], regex=".*(b).*", target_label="d")], {"a": "abc", "d": "b"}),
    ("drop no match", {"a": "foo"},
     [dict(source_labels=["a"], regex="no-match", action="drop")], {"a": "foo"}),
    ("drop is anchored", {"a": "foo"}, [dict(source_labels=["a"], regex="f|o", action="drop")], {"a": "foo"}),
    ("keep no match", {"a": "foo"}, [dict(source_labels=["a"], regex="no-match", action="keep")], None),
    ("keep match", {"a": "foo"}, [dict(source_labels=["a"], regex="f.*", action="keep")], {"a": "foo"}),
    ("replace needs a match", {"a": "boo"},
     [dict(source_labels=["a"], regex="f", target_label="b", replacement="bar")], {"a": "boo"}),
    ("hashmod", {"a": "foo", "b": "bar", "c": "baz"},
     [dict(source_labels=["c"], target_label="d", action="hashmod", modulus=1000)],
     {"a": "foo", "b": "bar", "c": "baz", "d": "976"}),
    ("hashmod newline", {"a": "foo\nbar"},
     [dict(source_labels=["a"], target_label="b", action="hashmod", modulus=1000)],
     {"a": "foo\nbar", "b": "734"}),
    ("labelmap", {"a": "foo", "b1": "bar", "b2": "baz"},
     [dict(regex="(b.*)", replacement="bar_${1}", action="labelmap")],
     {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"}),
    ("labelmap meta", {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc"},
     [dict(regex="__meta_(my.*)", replacement="${1}", action="labelmap")],
     {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc",
      "my_bar": "aaa", "my_baz": "bbb"}),
    ("templated target", {"a": "some-name-value"},
     [dict(source_labels=["a"], regex="some-([^-]+)-([^,]+)", replacement="${2}", target_label="${1}")],
     {"a": "some-name-value", "name": "value"}),
    ("empty replacement deletes nothing new", {"a": "some-name-value"},
     [dict(source_labels=["a"], regex="some-([^-]+)-([^,]+)", replacement="${3}", target_label="${1}")],
     {"a": "some-name-value"}),
    ("invalid target names skipped", {"a": "some-name-0"},
     [dict(source_labels=["a"], regex="some-([^-]+)-([^,]+)", replacement="${1}", target_label="${3}"),
      dict(source_labels=["a"], regex="some-([^-]+)-([^,]+)", replacement="${1}", target_label="${3}"),
      dict(source_labels=["a"], regex="some-([^-]+)(-[^,]+)", replacement="${1}", target_label="${3}")],
     {"a": "some-name-0"}),
    ("real-life tags", {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"},
     [dict(source_labels=["__meta_sd_tags"], regex="(?:.+,|^)path:(/[^,]+).*", replacement="${1}",
           target_label="__metrics_path__"),
      dict(source_labels=["__meta_sd_tags"], regex="(?:.+,|^)job:([^,]+).*", replacement="${1}",
           target_label="job"),
      dict(source_labels=["__meta_sd_tags"], regex="(?:.+,|^)label:([^=]+)=([^,]+).*", replacement="${2}",
           target_label="${1}")],
     {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar", "__metrics_path__": "/secret",
      "job": "some-job", "foo": "bar"}),
    ("issue 12283", {"__meta_kubernetes_pod_container_port_name": "foo",
                     "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091"},
     [dict(regex="^__meta_kubernetes_pod_container_port_name$", action="labeldrop"),
      dict(source_labels=["__meta_kubernetes_pod_annotation_XXX_metrics_port"], regex="(.+)",
           replacement="metrics", target_label="__meta_kubernetes_pod_container_port_name"),
      dict(source_labels=["__meta_kubernetes_pod_container_port_name"], regex="^metrics$", action="keep")],
     {"__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
      "__meta_kubernetes_pod_container_port_name": "metrics"}),
    ("labelkeep", {"a": "foo", "b1": "bar", "b2": "baz"}, [dict(regex="(b.*)", action="labelkeep")],
     {"b1": "bar", "b2": "baz"}),
    ("labeldrop", {"a": "foo", "b1": "bar", "b2": "baz"}, [dict(regex="(b.*)", action="labeldrop")],
     {"a": "foo"}),
    ("upper and lower", {"foo": "bAr123Foo"},
     [dict(source_labels=["foo"], action="uppercase", target_label="foo_uppercase"),
      dict(source_labels=["foo"], action="lowercase", target_label="foo_lowercase")],
     {"foo": "bAr123Foo", "foo_lowercase": "bar123foo", "foo_uppercase": "BAR123FOO"}),
    ("keepequal keeps", {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [dict(source_labels=["__tmp_port"], action="keepequal", target_label="__port1")],
     {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}),
    ("dropequal drops", {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [dict(source_labels=["__tmp_port"], action="dropequal", target_label="__port1")], None),
    ("dropequal keeps", {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [dict(source_labels=["__tmp_port"], action="dropequal", target_label="__port2")],
     {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}),
    ("keepequal drops", {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [dict(source_labels=["__tmp_port"], action="keepequal", target_label="__port2")], None),
    # Beyond the Go table: documented semantics.
    ("empty replace result deletes target", {"a": "x", "b": "keep-me"},
     [dict(source_labels=["a"], regex="x(.*)", target_label="b")], {"a": "x"}),
    ("missing source label is empty", {"a": "x"},
     [dict(source_labels=["nope"], target_label="b", replacement="set")], {"a": "x", "b": "set"}),
    ("separator", {"a": "1", "b": "2"},
     [dict(source_labels=["a", "b", "c"], separator="/", regex="(.*)", target_label="d")],
     {"a": "1", "b": "2", "d": "1/2/"}),
    ("lowercase of empty deletes", {"a": "x", "t": "old"},
     [dict(source_labels=["nope"], action="lowercase", target_label="t")], {"a": "x"}),
    ("keep with no sources matches empty", {"a": "x"}, [dict(regex="", action="keep")], {"a": "x"}),
    ("labelmap collision: later in sorted order wins", {"a_x": "1", "b_x": "2"},
     [dict(regex="(?:a|b)_(x)", replacement="$1", action="labelmap")], {"a_x": "1", "b_x": "2", "x": "2"}),
    ("labelmap collision: labels set by rules come last", {"a_x": "1", "b_x": "2"},
     [dict(source_labels=["a_x"], target_label="a_x", replacement="new"),
      dict(regex="(?:a|b)_(x)", replacement="$1", action="labelmap")],
     {"a_x": "new", "b_x": "2", "x": "new"}),
]


@pytest.mark.parametrize(("name", "labels", "rules", "expected"), CASES, ids=[c[0] for c in CASES])
def test_prometheus_table(name: str, labels: dict[str, str], rules: list[dict[str, Any]],
                          expected: dict[str, str] | None) -> None:
    before = dict(labels)
    got = process(labels, [rule(**r) for r in rules])
    assert got == expected
    assert labels == before, "the input must not be modified"
    if got is not None:
        assert list(got) == sorted(got), "output is sorted by name"


def test_hashmod_matches_prometheus() -> None:
    assert hashmod("baz", 1000) == 976
    assert hashmod("foo\nbar", 1000) == 734
    md5_of_empty = bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e")
    assert hashmod("", 2**64 - 1) == int.from_bytes(md5_of_empty[8:], "big")


@pytest.mark.parametrize(("template", "expected"), [
    ("$1", "ab"), ("${1}", "ab"), ("$1x", ""), ("${1}x", "abx"), ("$$1", "$1"), ("$", "$"),
    ("${", "${"), ("${1", "${1"), ("$name", "cd"), ("${name}_$2", "cd_cd"), ("$01", ""), ("$9", ""),
    ("$0", "ab-cd"), ("a$-b", "a$-b"), ("x$nam", "x"), ("$é", ""),
])
def test_go_template_expansion(template: str, expected: str) -> None:
    cfg = rule(source_labels=["v"], regex="(ab)-(?P<name>cd)", target_label="out", replacement=template)
    got = process({"v": "ab-cd"}, [cfg])
    assert got is not None
    assert got.get("out", "") == expected


@pytest.mark.parametrize(("regex", "value", "matches"), [
    ("foo", "foo\n", False),             # Python's `$` would match before a trailing newline
    ("foo$", "foo\n", False),
    (".*", "a\nb", False),               # `.` does not match a newline unless (?s)
    ("(?s).*", "a\nb", True),
    (r"\d+", "١٢", False),               # RE2 \d is ASCII only
    (r"\d+", "12", True),
    ("(?i)abc|x", "ABC", True),
    ("(?i)abc|x", "X", True),
    ("a(?i)b|c", "C", True),
    ("[[:upper:]]+", "ABC", True),
    ("[[:upper:]]+", "abc", False),
    (r"\Qa.b\E", "a.b", True),
    (r"\Qa.b\E", "axb", False),
    ("a{,2}", "a{,2}", True),            # not a repetition in RE2
    ("(?<n>a)b", "ab", True),
    (r"x\z", "x", True),
    ("(?m)a$", "a", True),
    ("(?U)a+", "aaa", True),             # ungreedy flag: Go has it, so does RE2
    (r"\pL+", "éa", True),               # Unicode classes
    (r"\p{Greek}", "\u03b1", True),
    (r"\Qa\Cb\E", "a\\Cb", True),        # `\C` is refused (test_rejected_regexes), but literal in \Q...\E
])
def test_re2_semantics(regex: str, value: str, matches: bool) -> None:
    cfg = rule(source_labels=["v"], regex=regex, action="keep")
    assert (process({"v": value}, [cfg]) is not None) is matches


@pytest.mark.parametrize(
    "regex", ["(?=a)", "(?!a)", "(?<=a)b", r"(a)\1", "a**", "a*+", "a{1001}", "(", r"\C", r"[\C]", r"\Z"])
def test_rejected_regexes(regex: str) -> None:
    with pytest.raises(ConfigError, match="error parsing regexp"):
        rule(source_labels=["v"], regex=regex, action="keep")


def test_unicode_case_mapping_is_per_rune() -> None:
    cfg = [rule(source_labels=["v"], action="lowercase", target_label="lo"),
           rule(source_labels=["v"], action="uppercase", target_label="up")]
    sigma, alpha, small_sigma, small_alpha = "\u03a3", "\u0391", "\u03c3", "\u03b1"
    word = sigma + alpha + sigma  # Python's str.lower() would end it with a final sigma
    got = process({"v": word + " straße"}, cfg)
    lowered = small_sigma + small_alpha + small_sigma
    assert got == {"v": word + " straße", "lo": lowered + " straße", "up": word + " STRAßE"}


@pytest.mark.parametrize(("kw", "message"), [
    (dict(action="nope"), 'unknown relabel action "nope"'),
    (dict(action="replace"), "requires 'target_label' value"),
    (dict(action="lowercase"), "requires 'target_label' value"),
    (dict(action="lowercase", target_label="${3}"), "\"${3}\" is invalid 'target_label'"),
    (dict(action="replace", target_label="0${3}"), "\"0${3}\" is invalid 'target_label'"),
    (dict(action="replace", target_label="-${3}"), "\"-${3}\" is invalid 'target_label' for replace action"),
    (dict(action="replace", target_label="a-b"), "\"a-b\" is invalid 'target_label'"),
    (dict(action="hashmod", target_label="x"), "requires non-zero modulus"),
    (dict(action="uppercase", target_label="x", replacement="y"), "'replacement' can not be set"),
    (dict(action="labelmap", replacement="-"), "is invalid 'replacement' for labelmap"),
    (dict(action="keepequal", target_label="x", regex="a"), "requires only 'source_labels'"),
    (dict(action="labeldrop", source_labels=["a"]), "requires only 'regex'"),
    (dict(action="keep", source_labels=["a-b"]), '"a-b" is not a valid label name'),
    (dict(action="keep", source_labels=["a\n"]), "is not a valid label name"),
])
def test_validation(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=__import__("re").escape(message)):
        rule(**kw)


@pytest.mark.parametrize(("target", "valid"), [
    ("-label", False), ("label", True), ("label${1}", True), ("${1}label", True), ("${1}", True),
    ("${", False), ("$", False), ("${}", False), ("foo${", False), ("$1", True), ("asd$2asd", True),
    ("-foo${1}bar-", False), ("_${1}_", True), ("foo${bar}foo", True),
])
def test_target_label_validity(target: str, valid: bool) -> None:
    cfg = RelabelConfig(source_labels=["a"], target_label=target)
    if valid:
        cfg.check()
    else:
        with pytest.raises(ConfigError, match="is invalid 'target_label'"):
            cfg.check()


def test_yaml_decoding_and_relabeler_reuse() -> None:
    cfg = loads(RelabelConfig, "source_labels: [job]\nregex: (.+)-(\\d+)\ntarget_label: shard\n"
                               "replacement: s$2\naction: Replace\n")
    relabeler = Relabeler([cfg])
    assert relabeler.process({"job": "api-7"}) == {"job": "api-7", "shard": "s7"}
    assert relabeler.process({"job": "api"}) == {"job": "api"}
    assert Relabeler([]).process({"b": "1", "a": "2"}) == {"a": "2", "b": "1"}
    assert not Relabeler([])
