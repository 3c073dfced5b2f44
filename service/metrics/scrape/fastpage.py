"""The usual scrape, at C speed: a text-format page whose series are all in the scrape cache.

Most scrapes return the same series as the last one with new values. For such a page nothing needs Python
code per sample: one regex pass splits every sample line into (series, value, timestamp), `map` looks the
series up in the cache and converts the values, and the WriteRequest is one `join` over per-series frames
kept from earlier scrapes (`Frames`). Anything unusual (a cache miss, a duplicate or relabel-dropped series
with a twist, explicit timestamps, a line the regex does not take exactly as the line parser would, an
unusual number) makes `build_fast` return None, and the line-by-line path in loop.py handles the page. The
two paths produce byte-identical records (tests/test_scrape_fastpage.py).
"""

from __future__ import annotations

import struct
from itertools import chain, compress, repeat
from operator import getitem, not_

from service.metrics.remote.codec import encode_varint
from service.metrics.scrape.parser import _comment

_ZERO = struct.pack("<d", 0.0)
_pack = struct.Struct("<d").pack


class Frames:
    """Per series: the bytes of its TimeSeries before the value, for a non-zero and for a zero value.

    A sample is then `frame + packed value + timestamp field`. Frames depend on the length of the timestamp
    field (the same for every scrape for decades), so they are dropped when that length changes.
    """

    def __init__(self) -> None:
        self.tsf_len = -1
        self.by_labels: dict[bytes, tuple[bytes, bytes]] = {}

    def get(self, tsf_len: int) -> dict[bytes, tuple[bytes, bytes]]:
        if tsf_len != self.tsf_len:
            self.tsf_len = tsf_len
            self.by_labels = {}
        return self.by_labels

    @staticmethod
    def make(lb: bytes, tsf_len: int) -> tuple[bytes, bytes]:
        nonzero = lb + b"\x12" + bytes((9 + tsf_len,)) + b"\x09"
        zero = lb + b"\x12" + bytes((tsf_len,))
        return (b"\x0a" + encode_varint(len(nonzero) + 8 + tsf_len) + nonzero,
                b"\x0a" + encode_varint(len(zero) + tsf_len) + zero)

    def keep_only(self, seen: set[bytes]) -> None:
        if len(self.by_labels) > 2 * len(seen) + 256:
            self.by_labels = {lb: f for lb, f in self.by_labels.items() if lb in seen}


def _without_comments(body: bytes) -> bytes | None:
    """The page with its comment lines cut out (each checked as the line parser checks it); None when the
    page has empty lines or does not end with a newline (the line parser decides those)."""
    if not body.endswith(b"\n") or b"\n\n" in body or body.startswith(b"\n"):
        return None
    text = b"\n" + body  # every comment line now follows a newline
    parts: list[bytes] = []
    pos = 1
    while True:
        at = text.find(b"\n#", pos - 1)
        if at < 0:
            parts.append(text[pos:])
            break
        end = text.find(b"\n", at + 1)
        _comment(text[at + 1:end], False)  # raises ParseError as the line parser would
        parts.append(text[pos:at + 1])
        pos = end + 1
    return b"".join(parts)


def build_fast(body: bytes, entries: dict[bytes, bytes], frames: Frames, tsf: bytes
               ) -> tuple[bytes, set[bytes], tuple[bytes, ...], int] | None:
    """(the page's encoded TimeSeries, their label bytes, the page's series keys, samples written) for a
    text page whose series are all cached and distinct with no timestamps; None when the line parser must
    decide."""
    clean = _without_comments(body)
    if not clean:
        return None
    lines = clean.split(b"\n")
    lines.pop()  # after the final newline
    keys, seps, raw_values = zip(*map(bytes.rpartition, lines, repeat(b" ")), strict=True)
    if b"" in seps:
        return None
    # Each key must be what the line parser takes: a name and label set ending in "}", or a bare name.
    # A key that is neither means a timestamp, odd spacing or a malformed line.
    braced = list(map(bytes.endswith, keys, repeat(b"}")))
    if not all(braced):
        bare = b"".join(compress(keys, map(not_, braced)))
        if b" " in bare or b"\t" in bare or b"{" in bare or b"}" in bare or b"#" in bare:
            return None
    if b"_" in b"".join(raw_values):
        return None
    try:
        values = list(map(float, raw_values))
    except ValueError:  # hex floats and the like: the line parser knows them
        return None
    labels = list(map(entries.get, keys))
    if None in labels:
        return None
    written = labels
    if b"" in labels:  # dropped by metric relabeling
        written = list(compress(labels, labels))
        values = list(compress(values, labels))
    seen = set(written)
    if len(seen) != len(written):
        return None  # duplicates: the line parser counts and skips them
    table = frames.get(len(tsf))
    pairs = list(map(table.get, written))
    if None in pairs:
        for i, pair in enumerate(pairs):
            if pair is None:
                pairs[i] = table[written[i]] = Frames.make(written[i], len(tsf))
    packed = list(map(_pack, values))
    zero = list(map(_ZERO.__eq__, packed))
    heads = map(getitem, pairs, zero)
    payloads = map({_ZERO: b""}.get, packed, packed)
    data = b"".join(chain.from_iterable(zip(heads, payloads, repeat(tsf, len(packed)), strict=True)))
    frames.keep_only(seen)
    return data, seen, keys, len(written)
