"""``report_labels`` (the report series' label sets, encoded around ``__name__`` once per target) against
the general path: merge ``__name__`` into the target's labels, sort, encode."""

from __future__ import annotations

import pytest

from service.metrics.remote.codec import encode_labels
from service.metrics.scrape.cache import merge_target_labels
from service.metrics.scrape.loop import REPORT_NAMES, report_labels


def _plain(target: dict[str, str]) -> list[bytes]:
    return [encode_labels(sorted(merge_target_labels([("__name__", n)], target, False).items()))
            for n in REPORT_NAMES]


@pytest.mark.parametrize("target", [
    {},
    {"instance": "127.0.0.1:9", "job": "j"},
    {"instance": "127.0.0.1:9", "job": "j", "Zone": "A", "_x": "1", "__a": "b", "__z": "c", "a": "é"},
    {"instance": "127.0.0.1:9", "job": "j", "empty": ""},
    {"instance": "127.0.0.1:9", "job": "j", "__name__": "custom"},
    {"instance": "127.0.0.1:9", "job": "j", "__name__": ""},
    {"AAA": "1", "__name": "x", "__name__x": "y", "___": "z"},
])
def test_report_labels_match_the_general_merge(target):
    assert report_labels(target) == _plain(target)
