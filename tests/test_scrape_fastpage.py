"""The fast path for unchanged text pages (service/metrics/scrape/fastpage.py) writes exactly the bytes the
line-by-line path writes, reports the same counts, and hands every page it cannot take to that path."""

from __future__ import annotations

import random

import pytest

import service.metrics.scrape.loop as loop_module
from service.config import schema
from service.metrics.scrape.cache import ScrapeCache
from service.metrics.scrape.loop import ScrapeLoop, _Encoder
from service.metrics.scrape.parser import ParseError
from service.metrics.scrape.target import Target
from service.relabel import RelabelConfig

LABELS = {"job": "j", "instance": "127.0.0.1:1"}
VALUES = ["0", "-0", "1", "1.5", "-2e-3", "NaN", "+Inf", "-Inf", "1e308", "123456789", "0.0", "7"]


def make_loop(relabel: str = "") -> ScrapeLoop:
    configs = schema.loads(list[RelabelConfig], relabel) if relabel else []
    target = Target(dict(LABELS), dict(LABELS), {}, "http://127.0.0.1:1/metrics", 1.0, 1.0)
    return ScrapeLoop(target, None, None, job="j", instance="i", honor_labels=False,  # type: ignore[arg-type]
                      honor_timestamps=True, sample_limit=0, body_size_limit=0,
                      cache=ScrapeCache(dict(LABELS), metric_relabel_configs=configs))


def page(rng: random.Random, series: int) -> bytes:
    lines = ["# HELP a_total A counter.", "# TYPE a_total counter"]
    for i in range(series):
        value = rng.choice(VALUES)
        if i % 5 == 0:
            lines.append(f"bare_{i} {value}")
        else:
            lines.append(f'a_total{{k="v{i}",path="/x y}}",code="{200 + i % 3}"}} {value}')
        if i % 7 == 3:
            lines.append("# a plain comment")
    return ("\n".join(lines) + "\n").encode()


def both(body: bytes, relabel: str = "", warm: bytes | None = None, ts: int = 1_700_000_000_123):
    """(line-by-line result, fast-path result) of `body` on two loops that both saw `warm` first."""
    results = []
    for fast in (False, True):
        loop = make_loop(relabel)
        original = loop_module.build_fast
        if not fast:
            loop_module.build_fast = lambda *a: None  # type: ignore[assignment]
        try:
            loop.build(warm if warm is not None else body, False, _Encoder(ts - 1000))
            results.append(loop.build(body, False, _Encoder(ts)))
        finally:
            loop_module.build_fast = original
    return results


def flat(result):
    out, seen, scraped, added, new, error = result
    return b"".join(out), seen, scraped, added, new, error


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_writes_the_same_bytes(seed: int) -> None:
    rng = random.Random(seed)
    warm = page(rng, 300)
    body = page(random.Random(seed + 100), 300)  # same series, other values
    slow, fast = both(body, warm=warm)
    assert flat(fast) == flat(slow)


def test_fast_path_runs_on_a_warm_unchanged_page() -> None:
    calls = []
    original = loop_module.build_fast

    def spy(*args):
        result = original(*args)
        calls.append(result is not None)
        return result

    loop_module.build_fast = spy  # type: ignore[assignment]
    try:
        loop = make_loop()
        body = page(random.Random(1), 50)
        loop.build(body, False, _Encoder(1))
        loop.build(body, False, _Encoder(2))
    finally:
        loop_module.build_fast = original
    assert calls == [False, True]  # the first page misses the cache; the second is all hits


def test_dropped_series_match_the_line_by_line_path() -> None:
    relabel = "- source_labels: [code]\n  regex: '201'\n  action: drop\n"
    body = page(random.Random(3), 200)
    slow, fast = both(body, relabel=relabel)
    assert flat(fast) == flat(slow)
    assert flat(fast)[3] < flat(fast)[2]  # some were dropped


@pytest.mark.parametrize("body", [
    b'a{x="1"} 1 1700000000000\n',  # an explicit timestamp
    b'a{x="1"} 1\na{x="1"} 2\n',  # a duplicate series
    b'a{x="1"}  1\n',  # two spaces
    b'a{x="1"}\t1\n',  # a tab
    b'a{x="1"} 0x1p3\n',  # a hex float
    b'a{x="1"} 1_000\n',  # digit separators (refused)
    b'a{x="1"} 1\n\nb 2\n',  # an empty line
    b'a{x="1"} 1',  # no final newline
    b'a{x="1"} 1 \n',  # trailing space
    b'a{x="1" 1\n',  # unterminated
    b'a{x="1"} 1\r\n',  # CRLF
    b'  a 1\n',  # leading blanks
    b'# TYPE a counter\na{x="1"} 1\n# EOF\n',
])
def test_unusual_pages_give_the_same_answer(body: bytes) -> None:
    try:
        slow = flat(both(body)[0])
    except ParseError as exc:
        with pytest.raises(ParseError) as raised:
            both(body)
        assert str(raised.value) == str(exc)
        return
    fast = flat(both(body)[1])
    assert fast == slow


def test_a_bad_type_line_fails_both_paths_alike() -> None:
    body = b"# TYPE a nonsense\na 1\n"
    with pytest.raises(ParseError) as one:
        both(body, warm=b"a 1\n")
    assert "invalid metric type" in str(one.value)
