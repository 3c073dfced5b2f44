"""Scrape cache: target label merge (honor_labels), metric relabeling, drops, limits, hits."""

import pytest

from service.config import schema
from service.metrics.scrape.cache import DROPPED, LabelLimits, ScrapeCache, merge_target_labels
from service.metrics.scrape.parser import ParseError
from service.proto.remote_pb2 import TimeSeries
from service.relabel import RelabelConfig

TARGET = {"job": "j", "instance": "h:1"}


def decode(lb: bytes) -> dict[str, str]:
    return {label.name: label.value for label in TimeSeries.FromString(lb).labels}


def rules(text: str) -> list[RelabelConfig]:
    return schema.loads(list[RelabelConfig], text)


def test_merge_conflicts() -> None:
    exposed = [("__name__", "m"), ("job", "other"), ("exported_job", "x"), ("empty", "")]
    assert merge_target_labels(exposed, TARGET, False) == {
        "__name__": "m", "job": "j", "instance": "h:1", "exported_job": "x", "exported_exported_job": "other"}
    assert merge_target_labels(exposed, TARGET, True) == {
        "__name__": "m", "job": "other", "exported_job": "x", "instance": "h:1"}


def test_cache_hit_miss_and_relabel() -> None:
    cache = ScrapeCache(TARGET, metric_relabel_configs=rules(
        "- source_labels: [__name__]\n  regex: drop_.*\n  action: drop\n"
        "- target_label: extra\n  replacement: yes\n"))
    assert cache.get(b'm{a="1"}') is None
    lb = cache.resolve(b'm{a="1"}', False)
    assert decode(lb) == {"__name__": "m", "a": "1", "extra": "yes", "instance": "h:1", "job": "j"}
    assert list(decode(lb)) == sorted(decode(lb))  # sorted names on the wire
    assert cache.get(b'm{a="1"}') is lb
    assert cache.resolve(b"drop_me", False) == DROPPED
    assert cache.get(b"drop_me") == DROPPED
    assert cache.misses == 2


def test_duplicate_label_names_and_limits() -> None:
    cache = ScrapeCache(TARGET)
    with pytest.raises(ParseError):
        cache.resolve(b'm{a="1",a="2"}', False)
    limited = ScrapeCache(TARGET, limits=LabelLimits(label_limit=3))
    with pytest.raises(ParseError, match="label_limit exceeded"):
        limited.resolve(b'm{a="1",b="2"}', False)
    with pytest.raises(ParseError, match="label_value_length_limit"):
        ScrapeCache(TARGET, limits=LabelLimits(label_value_length_limit=3)).resolve(b'm{a="long"}', False)
    with pytest.raises(ParseError, match="label_name_length_limit"):
        ScrapeCache(TARGET, limits=LabelLimits(label_name_length_limit=3)).resolve(b'm{abcd="1"}', False)


def test_trim_on_churn() -> None:
    cache = ScrapeCache(TARGET)
    for i in range(1000):
        cache.resolve(f'm{{i="{i}"}}'.encode(), False)
    cache.trim(10)
    assert cache.entries == {}
