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


# ----------------------------------------------------------------------- the same-layout path (fastpage.Shape)

def make_loop_with(relabel: str = "", sample_limit: int = 0, honor_timestamps: bool = True) -> ScrapeLoop:
    loop = make_loop(relabel)
    loop.sample_limit = sample_limit
    loop.honor_timestamps = honor_timestamps
    return loop


SERIES = [b'a_total{k="v%d",path="/x y}",code="%d"}' % (i, 200 + i % 3) for i in range(40)] + \
    [b"bare_%d" % i for i in range(10)] + [b'esc{v="a\\"b\\\\c\\nd",w="%d"}' % i for i in range(5)] + \
    [b'h_bucket{le="%s"}' % le for le in (b"0.1", b"1", b"+Inf")] + [b"h_sum", b"h_count"]
EDGE_VALUES = [*VALUES, "-0.0", "1e-320", "-Inf", "0", "0", "0", "3.14159", "18446744073709551616"]


def mutate(rng: random.Random, keys: list[bytes], comments: dict[int, bytes]) -> tuple[list[bytes], dict[int, bytes]]:
    """The series set and comments of the next page: mostly unchanged, sometimes changed in one way."""
    keys, comments = list(keys), dict(comments)
    roll = rng.random()
    if roll < 0.08 and len(keys) > 2:
        del keys[rng.randrange(len(keys))]  # a series went away
    elif roll < 0.14:
        keys.insert(rng.randrange(len(keys) + 1), b"new_%d" % rng.randrange(1000))  # a new series
    elif roll < 0.18 and len(keys) > 2:
        i = rng.randrange(len(keys) - 1)
        keys[i], keys[i + 1] = keys[i + 1], keys[i]  # same series, other order
    elif roll < 0.22:
        keys.append(rng.choice(keys))  # a duplicate series
    elif roll < 0.26:
        comments[rng.randrange(len(keys))] = b"# HELP x Changed %d." % rng.randrange(100)
    elif roll < 0.29 and comments:
        del comments[rng.choice(list(comments))]
    return keys, comments


def render(rng: random.Random, keys: list[bytes], comments: dict[int, bytes], odd: float = 0.0) -> bytes:
    lines = []
    for i, key in enumerate(keys):
        if i in comments:
            lines.append(comments[i])
        value = rng.choice(EDGE_VALUES).encode()
        line = key + b" " + value
        if rng.random() < odd:  # a line only the line parser can read
            line = rng.choice([line + b" 1700000000000", key + b"  " + value, key + b"\t" + value,
                               key + b" 0x1p3", key + b" 1_0", b"", b"# a plain comment"])
        lines.append(line)
    return b"\n".join(lines) + b"\n"


def pages(seed: int, count: int = 30, odd: float = 0.0) -> list[bytes]:
    rng = random.Random(seed)
    keys, comments = list(SERIES), {0: b"# HELP a_total A counter.", 0.5: b"# TYPE a_total counter",
                                    41: b"# TYPE h histogram"}
    out = []
    for _ in range(count):
        out.append(render(rng, keys, comments, odd))
        if rng.random() < 0.3:
            keys, comments = mutate(rng, keys, comments)
    return out


def run_pages(bodies: list[bytes], fast: bool, relabel: str = "", sample_limit: int = 0) -> list[tuple]:
    """Every page's build result and the loop's stale-marker input, on one loop, with or without the fast
    paths."""
    loop = make_loop_with(relabel, sample_limit)
    original = loop_module.build_fast
    if not fast:
        loop_module.build_fast = lambda *a: None  # type: ignore[assignment]
    results = []
    try:
        for i, body in enumerate(bodies):
            try:
                out, seen, scraped, added, new, error = loop.build(body, False, _Encoder(1_700_000_000_000 + i))
            except ParseError as exc:
                results.append(("ParseError", str(exc)))
                continue
            results.append((b"".join(out), sorted(seen), scraped, added, new, error))
    finally:
        loop_module.build_fast = original
    return results


@pytest.mark.parametrize("seed", range(10))
def test_a_sequence_of_pages_gives_the_same_bytes_on_every_path(seed: int) -> None:
    """Values, zeros (positive and negative), NaN, Inf, label escapes, histograms; series sets that change,
    reorder, repeat; comments that change, between mostly unchanged pages."""
    bodies = pages(seed, odd=0.02 if seed % 2 else 0.0)
    assert run_pages(bodies, True) == run_pages(bodies, False)


@pytest.mark.parametrize(("relabel", "limit"), [
    ("- source_labels: [code]\n  regex: '201'\n  action: drop\n", 0),
    ("- source_labels: [__name__]\n  regex: 'bare_.*'\n  action: drop\n", 0),
    ("", 55),  # the sample limit is crossed by some pages and not others
    ("- source_labels: [code]\n  regex: '20[01]'\n  action: drop\n", 30),
])
def test_relabel_drops_and_sample_limits_give_the_same_bytes(relabel: str, limit: int) -> None:
    bodies = pages(7, count=25)
    assert run_pages(bodies, True, relabel, limit) == run_pages(bodies, False, relabel, limit)


def test_an_unchanged_layout_takes_the_same_layout_path() -> None:
    """The third page of an unchanged series set goes through `Shape` (no per-series lookups); changing
    one series, one comment, or the cache sends the page back to the general path."""
    from service.metrics.scrape import fastpage

    used = []
    original = fastpage._same_layout

    def spy(*args):
        result = original(*args)
        used.append(result is not None)
        return result

    fastpage._same_layout = spy  # type: ignore[assignment]
    try:
        rng = random.Random(5)
        comments = {0: b"# TYPE a_total counter"}
        loop = make_loop()
        for i in range(4):
            loop.build(render(rng, SERIES, comments), False, _Encoder(1_700_000_000_000 + i))
        loop.build(render(rng, [*SERIES[:-1], b"other"], comments), False, _Encoder(1_700_000_000_010))
        loop.build(render(rng, [*SERIES[:-1], b"other"], comments), False, _Encoder(1_700_000_000_011))
        loop.build(render(rng, [*SERIES[:-1], b"other"], {0: b"# TYPE a_total gauge"}), False,
                   _Encoder(1_700_000_000_012))
        loop.cache.keep([])  # the cache forgets every series (a page without them was scraped meanwhile)
        loop.build(render(rng, [*SERIES[:-1], b"other"], {0: b"# TYPE a_total gauge"}), False,
                   _Encoder(1_700_000_000_013))
    finally:
        fastpage._same_layout = original
    # pages 1 (cache misses) and 2 (general path) leave a layout, which pages 3 and 4 take; a changed
    # series does not (then misses the cache), and its repeat goes through the general path again; a
    # changed comment and a changed cache do not either.
    assert used == [True, True, False, False, False]


def test_zero_patterns_and_timestamp_lengths_give_the_same_bytes() -> None:
    """Pages whose zero values move around (more patterns than the layout keeps compiled), and a timestamp
    field whose length changes (ts 0: no field at all)."""
    rng = random.Random(11)
    bodies = []
    for _ in range(12):
        bodies.append(b"".join(key + b" " + rng.choice([b"0", b"-0", b"0.0", b"1", b"2.5", b"NaN"]) + b"\n"
                               for key in SERIES))
    results = {}
    for fast in (True, False):
        loop = make_loop()
        original = loop_module.build_fast
        if not fast:
            loop_module.build_fast = lambda *a: None  # type: ignore[assignment]
        try:
            out = []
            for i, body in enumerate(bodies):
                ts = [1_700_000_000_000 + i, 0, 1, 1 << 40][i % 4] if i >= 6 else 1_700_000_000_000 + i
                built = loop.build(body, False, _Encoder(ts))
                out.append((b"".join(built[0]), built[2:]))
            results[fast] = out
        finally:
            loop_module.build_fast = original
    assert results[True] == results[False]
