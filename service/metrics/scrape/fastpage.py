"""The usual scrape, at C speed: a text-format page whose series are all in the scrape cache.

Most scrapes return the same series as the last one with new values. For such a page no Python code runs
per sample: the page is split into lines once, `map` splits each line at its last space, looks the series up
in the cache and converts the values, and the WriteRequest is one `join` over per-series frames kept from
earlier scrapes (`Frames`). Anything unusual (a cache miss, which also covers timestamps, odd spacing and
malformed lines; a duplicate series; an unusual number) makes `build_fast` return None, and the
line-by-line path in loop.py handles the page. Both paths write byte-identical records
(tests/test_scrape_fastpage.py).
"""

from __future__ import annotations

import struct
from itertools import compress, repeat
from operator import getitem, itemgetter, not_

from service.metrics.scrape.parser import _comment
from service.proto.wire import encode_varint

_ZERO = struct.pack("<d", 0.0)
_pack = struct.Struct("<d").pack
_first, _last = itemgetter(0), itemgetter(2)


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


def build_fast(body: bytes, entries: dict[bytes, bytes], frames: Frames, tsf: bytes
               ) -> tuple[bytes, set[bytes], list[bytes], int] | None:
    """(the page's encoded TimeSeries, their label bytes, the page's series keys, samples written) for a
    text page whose series are all cached and distinct with no timestamps; None when the line parser must
    decide.

    Every line is split at its last space. A cache hit proves the split is the line parser's: cache keys
    are only what that parser took as keys (a label set ending in "}", or a bare name), so a line with a
    timestamp, odd spacing, an empty line or anything malformed gives a key that is not cached.
    """
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    comment = list(map(bytes.startswith, lines, repeat(b"#")))
    if any(comment):
        for line in compress(lines, comment):
            _comment(line, False)  # raises ParseError as the line parser would
        lines = list(compress(lines, map(not_, comment)))
    if not lines:
        return None
    parts = list(map(bytes.rpartition, lines, repeat(b" ")))
    keys = list(map(_first, parts))
    raw_values = list(map(_last, parts))
    if b"_" in b"".join(raw_values):  # Go refuses digit separators; Python's float() takes them
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
    data = tsf.join(map(bytes.__add__, heads, payloads)) + tsf  # every sample ends with the timestamp field
    frames.keep_only(seen)
    return data, seen, keys, len(written)
