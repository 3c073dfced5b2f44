"""Text format and OpenMetrics splitting/parsing: escaping, timestamps, NaN/Inf, invalid lines."""

import math

import pytest

from service.metrics.scrape.parser import ParseError, is_openmetrics, parse_series, split_samples


def samples(body: bytes, om: bool = False) -> list:
    return list(split_samples(body, om))


def test_text_basic_and_comments() -> None:
    body = (b"# HELP a_total Some help \\n with escapes\n# TYPE a_total counter\n"
            b"a_total 3\n\n# a free comment\nb{x=\"1\",y=\"2\"} 1.5 1700000000000\nc{} -Inf\n")
    out = samples(body)
    assert out[0] == (b"a_total", 3.0, None)
    assert out[1] == (b'b{x="1",y="2"}', 1.5, 1700000000000)
    assert out[2][0] == b"c{}" and out[2][1] == -math.inf


def test_nan_inf_and_hex() -> None:
    out = samples(b"a NaN\nb +Inf\nc Inf\nd 0x1p3\ne 1e-3\n")
    assert math.isnan(out[0][1])
    assert out[1][1] == math.inf and out[2][1] == math.inf
    assert out[3][1] == 8.0 and out[4][1] == 0.001


def test_label_values_with_braces_spaces_and_escapes() -> None:
    line = b'a{path="/x} y",q="say \\"hi\\"\\n",b="back\\\\slash"} 7\n'
    ((key, value, ts),) = samples(line)
    assert value == 7.0 and ts is None
    assert parse_series(key) == [("__name__", "a"), ("path", "/x} y"), ("q", 'say "hi"\n'), ("b", "back\\slash")]


def test_text_whitespace_and_trailing_comma() -> None:
    ((key, _, _),) = samples(b'a { b = "c" , } \t 2\n')
    assert parse_series(key) == [("__name__", "a"), ("b", "c")]


@pytest.mark.parametrize("body", [
    b"a\n",                          # no value
    b"a 1 2 3\n",                    # too many tokens
    b"a abc\n",                      # bad value
    b"a 1_000\n",                    # Go does not take digit separators
    b"a 1 12.5\n",                   # text timestamps are integer ms
    b"# TYPE a bogus\n",             # unknown type
    b"# TYPE 1a counter\n",          # bad metric name
])
def test_text_invalid_lines_fail_the_split(body: bytes) -> None:
    with pytest.raises(ParseError):
        samples(body)


@pytest.mark.parametrize("key", [
    b'1a{b="c"}', b'a{b="c"', b'a{b=c}', b'a{1b="c"}', b'a{b="c"} x}', b'a{b="\xff"}', b'a{b="c" d="e"}',
])
def test_invalid_series_keys(key: bytes) -> None:
    with pytest.raises(ParseError):
        parse_series(key)


def test_openmetrics_exemplars_timestamps_and_eof() -> None:
    body = (b"# TYPE f histogram\n# UNIT f seconds\n"
            b'f_bucket{le="1"} 3 # {trace_id="a b } c"} 0.5 1700000000.5\n'
            b'f_bucket{le="+Inf"} 4 1700000000.25\nf_count 4\nf_created 1.7e9\n# EOF\n')
    out = samples(body, om=True)
    assert out[0] == (b'f_bucket{le="1"}', 3.0, None)
    assert out[1] == (b'f_bucket{le="+Inf"}', 4.0, 1700000000250)
    assert [k for k, _, _ in out] == [b'f_bucket{le="1"}', b'f_bucket{le="+Inf"}', b"f_count", b"f_created"]


@pytest.mark.parametrize("body", [
    b"a 1\n",                        # no # EOF
    b"a 1\n# EOF\nb 2\n",            # data after EOF
    b"a 1\n\n# EOF\n",               # empty line
    b"#bad comment\na 1\n# EOF\n",   # comments other than HELP/TYPE/UNIT/EOF
    b"# TYPE a histogramx\n# EOF\n",
])
def test_openmetrics_invalid(body: bytes) -> None:
    with pytest.raises(ParseError):
        samples(body, om=True)


def test_content_type_selection() -> None:
    assert is_openmetrics("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert not is_openmetrics("text/plain; version=0.0.4")
    assert not is_openmetrics("")
