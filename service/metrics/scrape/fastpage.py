"""The usual scrape, at C speed: a text-format page whose series are all in the scrape cache.

Most scrapes return the same series as the last one with new values. For such a page no Python code runs
per sample. Two levels:

- *Same layout as the last page* (`Shape`): the page is split into lines once; its comment lines are
  compared with the last page's as one list, its series keys with the last page's keys as one list
  (`==`, C speed), the values are converted with one `map(float)`, and the whole WriteRequest is one
  `struct.pack` over (frame, value, timestamp field) per series with a format compiled for that layout.
- *All series cached* (`build_fast` otherwise): `map` splits each line at its last space, looks the series
  up in the cache and converts the values, and the WriteRequest is one `join` over per-series frames kept
  from earlier scrapes (`Frames`). The layout is then remembered for the next scrape.

Anything unusual (a cache miss, which also covers timestamps, odd spacing and malformed lines; a duplicate
series; an unusual number) makes `build_fast` return None, and the line-by-line path in loop.py handles the
page. All paths write byte-identical records (tests/test_scrape_fastpage.py).
"""

from __future__ import annotations

import math
import struct
from itertools import compress, repeat
from operator import getitem, itemgetter, not_

from service.metrics.scrape.cache import ScrapeCache
from service.metrics.scrape.parser import _comment
from service.proto.wire import encode_varint

_ZERO = struct.pack("<d", 0.0)
_pack = struct.Struct("<d").pack
_first, _second, _last = itemgetter(0), itemgetter(1), itemgetter(2)


class Shape:
    """The layout of the last page the fast path wrote: where its comment lines are and what they say, its
    series keys in page order, and per written series its frames; plus the `struct` format that packs the
    whole page, compiled for where the page's zero values are (the usual page keeps them in place).

    Valid while the scrape cache has not changed since (`generation`): then the same keys resolve to the
    same label bytes, none is new, and none repeats. Masks are bytes (one byte per line) to keep it small.
    """

    __slots__ = ("comment_mask", "comments", "formats", "generation", "keep_mask", "keys", "n_lines",
                 "nonzero_heads", "packer", "packer_zeros", "sample_mask", "seen", "tsf_len", "written",
                 "zero_heads")

    def __init__(self, n_lines: int, comment: list[bool] | None, comments: list[bytes], keys: list[bytes],
                 labels: list[bytes] | None, seen: set[bytes], pairs: list[tuple[bytes, bytes]],
                 tsf_len: int) -> None:
        self.generation = -1  # set by `Frames.confirm` once the loop has settled the cache
        self.n_lines = n_lines
        self.comment_mask = bytes(comment) if comment is not None else None
        self.sample_mask = bytes(map(not_, comment)) if comment is not None else None
        self.comments = comments
        self.keys = keys
        self.keep_mask = bytes(map(bool, labels)) if labels is not None else None  # written or dropped
        self.seen = seen
        self.written = len(pairs)
        self.tsf_len = tsf_len
        self.nonzero_heads = list(map(_first, pairs))
        self.zero_heads = list(map(_second, pairs))
        tail = f"{tsf_len}s"
        self.formats = "|".join([f"{len(h)}sd{tail}" for h in self.nonzero_heads])  # per series, non-zero
        self.packer_zeros: tuple[int, ...] | None = None
        self.packer = self._compile(())

    def _compile(self, zeros: tuple[int, ...]):  # type: ignore[no-untyped-def]
        fmt = self.formats.split("|")
        tail = f"0s{self.tsf_len}s"  # a positive zero's sample has no value field: an empty value instead
        zero_heads = self.zero_heads
        for i in zeros:
            fmt[i] = f"{len(zero_heads[i])}s{tail}"
        self.packer_zeros = zeros
        return struct.Struct("<" + "".join(fmt)).pack

    def pack(self, values: list, tsf: bytes) -> bytes:
        """The encoded TimeSeries of `values` (floats, one per written series, in page order)."""
        args = [tsf] * (3 * self.written)
        zeros: tuple[int, ...] = ()
        heads = self.nonzero_heads
        if values.count(0.0):
            found = []  # positive zeros only: a negative zero keeps its value field
            i = -1
            index = values.index
            try:
                while True:
                    i = index(0.0, i + 1)
                    if math.copysign(1.0, values[i]) > 0:
                        found.append(i)
            except ValueError:
                pass
            if found:
                zeros = tuple(found)
                heads = heads.copy()
                zero_heads = self.zero_heads
                for i in zeros:
                    heads[i] = zero_heads[i]
                    values[i] = b""
        if zeros != self.packer_zeros:
            self.packer = self._compile(zeros)
        args[0::3] = heads
        args[1::3] = values
        return self.packer(*args)


class Frames:
    """Per series: the bytes of its TimeSeries before the value, for a non-zero and for a zero value.

    A sample is then `frame + packed value + timestamp field`. Frames depend on the length of the timestamp
    field (the same for every scrape for decades), so they are dropped when that length changes. `shape` is
    the layout of the last page written through them.
    """

    def __init__(self) -> None:
        self.tsf_len = -1
        self.by_labels: dict[bytes, tuple[bytes, bytes]] = {}
        self.shape: Shape | None = None

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

    def confirm(self, generation: int) -> None:
        """The loop wrote the page: its layout holds while the cache stays at `generation`."""
        if self.shape is not None and self.shape.generation == -1:
            self.shape.generation = generation


def _same_layout(lines: list[bytes], shape: Shape, cache: ScrapeCache, tsf: bytes
                 ) -> tuple[bytes, set[bytes], list[bytes], int] | None:
    """`build_fast` for a page laid out as the last one: same lines count, same comment lines at the same
    places, same series keys in the same order; None when it is not, or a value is unusual."""
    if len(lines) != shape.n_lines or shape.generation != cache.generation or len(tsf) != shape.tsf_len:
        return None
    if shape.comment_mask is not None:
        if list(compress(lines, shape.comment_mask)) != shape.comments:
            return None
        lines = list(compress(lines, shape.sample_mask))  # type: ignore[arg-type]
    parts = list(map(bytes.rpartition, lines, repeat(b" ")))
    keys = list(map(_first, parts))
    if keys != shape.keys:
        return None
    raw_values = list(map(_last, parts))
    if b"_" in b"".join(raw_values):
        return None
    try:
        values = list(map(float, raw_values))
    except ValueError:
        return None
    if shape.keep_mask is not None:
        values = list(compress(values, shape.keep_mask))
    return shape.pack(values, tsf), shape.seen, shape.keys, shape.written


def build_fast(body: bytes, cache: ScrapeCache, frames: Frames, tsf: bytes
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
    shape = frames.shape
    if shape is not None:
        result = _same_layout(lines, shape, cache, tsf)
        if result is not None:
            return result
        frames.shape = None
    n_lines = len(lines)
    comment = list(map(bytes.startswith, lines, repeat(b"#")))
    comments: list[bytes] = []
    if any(comment):
        comments = list(compress(lines, comment))
        for line in comments:
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
    labels = list(map(cache.entries.get, keys))
    if None in labels:
        return None
    written = labels
    dropped = b"" in labels
    if dropped:  # dropped by metric relabeling
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
    frames.shape = Shape(n_lines, comment if comments else None, comments, keys, labels if dropped else None,
                         seen, pairs, len(tsf))
    return data, seen, keys, len(written)
