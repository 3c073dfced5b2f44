"""Self metrics exposed under the exact names Grafana Agent, Alloy, Prometheus and Promtail use.

prometheus-client appends `_total` to every Counter in the text format, and adds a `_created` series to
counters and histograms. Dashboards built for the Go agents query names like Alloy's
`loki_source_api_entries_written` (a counter without `_total`) and know no `_created` series. So:

- `ExactCounter` is a Counter whose exposed name is the name given, byte for byte;
- `exposition()` renders a registry as `GET /metrics` serves it, with `_created` series disabled;
- `remove_series()` drops one labelled child of several metrics, for a part that is gone for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import prometheus_client
from prometheus_client import REGISTRY, Counter, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# as Prometheus exporters do: a `_created` series per counter and histogram is noise to every dashboard
prometheus_client.disable_created_metrics()


class _ExactFamily(Metric):
    """A counter family whose samples carry the family's own name (no `_total`)."""


class ExactCounter(Counter):
    """A Counter exposed as `name`, without the `_total` prometheus-client would add (Alloy's
    `loki_source_api_entries_written`). Use it only where the upstream name has no `_total`."""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (), **kwargs: object) -> None:
        if name.endswith("_total"):
            raise ValueError(f"{name}: use a plain Counter, its exposed name already ends in _total")
        super().__init__(name, documentation, labelnames, **kwargs)  # type: ignore[arg-type]
        self._exact_name = name

    def collect(self) -> Iterable[Metric]:
        for family in super().collect():
            exact = _ExactFamily(self._exact_name, family.documentation, "unknown")
            for sample in family.samples:
                if sample.name == self._exact_name + "_total":
                    exact.add_sample(self._exact_name, sample.labels, sample.value, sample.timestamp)
            yield exact


class _Families:
    """The registry's families, the exact-name ones typed so that generate_latest keeps their names."""

    def __init__(self, registry: Collector) -> None:
        self.registry = registry
        self.exact: list[str] = []

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if isinstance(family, _ExactFamily):
                self.exact.append(family.name)
            yield family


def exposition(registry: Collector = REGISTRY) -> bytes:
    """The Prometheus text format of `registry`, exact-name counters typed `counter`."""
    families = _Families(registry)
    text = generate_latest(families)  # type: ignore[arg-type]
    for name in families.exact:
        text = text.replace(f"# TYPE {name} untyped\n".encode(), f"# TYPE {name} counter\n".encode(), 1)
    return text


def remove_series(metrics: Iterable[MetricWrapperBase], *labels: str) -> None:
    """Remove the child with ``labels`` from each metric that has one (an instance removed for good)."""
    for metric in metrics:
        try:
            metric.remove(*labels)
        except KeyError:
            continue
