"""The RE2 wrapper (service/re2.py): anchoring, groups, Go's template expansion and error wording, and linear
time on patterns that make a backtracking matcher explode."""

from __future__ import annotations

import pickle
import time

import pytest

from service import re2
from service.config.errors import ConfigError
from service.logs.stages.golayout import compile_layout
from service.relabel import RelabelConfig, compile_regex, process


def test_unanchored_search_and_groups() -> None:
    rx = re2.compile(r"(\w+)=(?P<value>\d+)|(x)")
    m = rx.search("  key=42 tail")
    assert m is not None
    assert (m.group(0), m.group(1), m.group("value"), m.group(2)) == ("key=42", "key", "42", "42")
    assert m.group(3) is None  # did not take part in the match
    assert rx.groups == 3 and rx.groupindex == {"value": 2}
    assert rx.test("a=1") and not rx.test("a=b")
    assert re2.compile("é(.)").search("xéñ").group(1) == "ñ"  # type: ignore[union-attr]


def test_relabel_regexes_are_anchored_as_prometheus_does() -> None:
    rx = compile_regex("f|o")
    assert rx.pattern == "^(?:f|o)$"
    assert not rx.test("foo") and rx.test("f")
    # Prometheus pastes the pattern between `^(?:` and `)$`, so this is valid there and means `^(?:a)|(b)$`
    odd = compile_regex("a)|(b")
    assert odd.test("a") and odd.test("xb") and not odd.test("c")
    assert compile_regex("(?s).*").test("a\nb")
    assert not compile_regex("foo").test("foo\n")


@pytest.mark.parametrize(("pattern", "message"), [
    ("(a", "error parsing regexp: missing closing ): `^(?:(a)$`"),
    ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
    ("a{1001}", "error parsing regexp: invalid repeat count: `{1001}`"),
    ("(?=a)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
    (r"(a)\1", r"error parsing regexp: invalid escape sequence: `\1`"),
    ("[z-a]", "error parsing regexp: invalid character class range: `z-a`"),
    (r"\C", r"error parsing regexp: invalid escape sequence: `\C`"),
    ("(?P<>a)", "error parsing regexp: invalid named capture: `(?P<>`"),
])
def test_invalid_patterns_get_go_wording(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_regex(pattern)
    assert str(info.value) == message


def test_replacement_expansion_stays_go_template() -> None:
    cfg = RelabelConfig(source_labels=["v"], regex="(?P<host>[^:]+):(\\d+)", target_label="t",
                        replacement="${host}-$2-$1x-$$-${9}")
    cfg.check()
    assert process({"v": "db:5432"}, [cfg]) == {"v": "db:5432", "t": "db-5432--$-"}


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    """`(a|a)*b` against 26 a's took 11.7 s with Python's `re`; RE2 takes microseconds, even at 100k."""
    rx = compile_regex("(a|a)*b")
    started = time.perf_counter()
    assert not rx.test("a" * 30)
    assert not rx.test("a" * 100_000)
    assert rx.search("a" * 100_000 + "b") is not None
    assert time.perf_counter() - started < 1.0


def test_template_target_check_is_linear() -> None:
    """The `target_label` template check ran Python's `re` with nested repetition: minutes at 22 chars."""
    cfg = RelabelConfig(source_labels=["v"], target_label="$" + "a" * 5000 + "-")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="invalid 'target_label'"):
        cfg.check()
    assert time.perf_counter() - started < 1.0


def test_go_time_layout_does_not_backtrack() -> None:
    """A layout of many adjacent `\\d{1,2}` chunks against a line that does not fit."""
    parse = compile_layout("1" * 40)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="cannot parse"):
        parse("1" * 60 + "x")
    assert time.perf_counter() - started < 1.0


def test_equal_patterns_share_one_compiled_object_and_pickle() -> None:
    a, b = re2.compile("(.*)"), re2.compile("(.*)")
    assert a is b
    copy = pickle.loads(pickle.dumps(compile_regex("x(y)")))
    assert copy.search("xy").group(1) == "y"  # type: ignore[union-attr]


def test_text_that_is_not_utf8_does_not_raise() -> None:
    assert re2.compile("a.*").test("a\ud800")


def test_chat_intent_is_linear_in_the_question() -> None:
    """`\\b(what)\\b.*\\b(most)\\b` on Python's re took 1.7 s for a 10,000-character question (the API's limit)."""
    from service.logs.search.chat.offline import intent

    assert intent("which sources are the noisiest") == "rank"
    started = time.perf_counter()
    intent("what " * 2000)
    assert time.perf_counter() - started < 0.5


def test_answer_cache_is_bounded_and_correct() -> None:
    rx = re2.compile("^cache-(x+)$")
    for i in range(2000):
        assert rx.test(f"cache-{'x' * (i % 7 + 1)}{i}") is False
        m = rx.search(f"cache-{'x' * (i % 5 + 1)}")
        assert m is not None and m.group(1) == "x" * (i % 5 + 1)
    assert len(rx._tested) <= re2._CACHE_ENTRIES and len(rx._searched) <= re2._CACHE_ENTRIES
    long_line = "cache-" + "x" * 1000
    assert rx.test(long_line) and long_line not in rx._tested  # log lines are not kept
