"""Partial views of a remote write WriteRequest, parsed by upb in C, for the receiver's fast checks.

A view declares only the fields one check needs; everything else is skipped by the parser and then dropped
(``DiscardUnknownFields``), so no per-label Python objects are ever built:

- :data:`CountView`: samples, exemplars and histograms as empty messages, with ``timeseries`` declared
  singular: protobuf merges repeated occurrences of a singular message field, so upb folds every series
  into one whose lists hold all of them, and ``len()`` gives exact totals;
- :data:`KeyView`: each series' labels as raw bytes, so a series' labels-only encoding (its identity, the
  same bytes a TimeSeries with only labels has) costs one C serialization.

Built from descriptors at import, so no generated code is needed.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_REPEATED, _OPTIONAL = 3, 1
_MESSAGE, _BYTES = 11, 12


def _build() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(name="service/remote_views.proto", package="remote_views",
                                             syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, str]]) -> None:
        msg = fdp.message_type.add(name=name)
        for field_name, number, ftype, type_name in fields:
            f = msg.field.add(name=field_name, number=number, label=_REPEATED, type=ftype)
            if type_name:
                f.type_name = f".remote_views.{type_name}"

    message("Empty", [])
    message("SeriesCounts", [("samples", 2, _MESSAGE, "Empty"), ("exemplars", 3, _MESSAGE, "Empty"),
                             ("histograms", 4, _MESSAGE, "Empty")])
    message("CountView", [("timeseries", 1, _MESSAGE, "SeriesCounts"), ("metadata", 3, _MESSAGE, "Empty")])
    fdp.message_type[-1].field[0].label = _OPTIONAL  # singular: all series fold into one
    message("SeriesKey", [("labels", 1, _BYTES, "")])
    message("KeyView", [("timeseries", 1, _MESSAGE, "SeriesKey")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"remote_views.{name}"))
            for name in ("CountView", "KeyView")}


_CLASSES = _build()
CountView: Any = _CLASSES["CountView"]
KeyView: Any = _CLASSES["KeyView"]

def totals(raw: bytes) -> tuple[int, int, int, int]:
    """``(samples, exemplars, histograms, metadata)`` of a decoded WriteRequest.
    Raises google.protobuf.message.DecodeError on malformed wire data."""
    view = CountView.FromString(raw)
    series = view.timeseries
    return len(series.samples), len(series.exemplars), len(series.histograms), len(view.metadata)


def counts(raw: bytes) -> tuple[int, int, int, int, int]:
    """``(series, samples, exemplars, histograms, metadata)`` of a decoded WriteRequest (the series from a
    :func:`series_keys` view; the receiver takes them from the one it parses anyway)."""
    return (len(series_keys(raw).timeseries), *totals(raw))


def series_keys(raw: bytes) -> Any:
    """A KeyView of a decoded WriteRequest: its ``timeseries`` hold only their labels (as raw bytes), and
    ``SerializeToString`` of each is that series' labels-only encoding."""
    view = KeyView.FromString(raw)
    view.DiscardUnknownFields()
    return view
