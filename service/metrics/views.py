"""Partial views of a remote write WriteRequest, parsed by upb in C, for the receiver's fast checks.

A view declares only the fields one check needs; everything else is skipped by the parser and then dropped
(``DiscardUnknownFields``), so no per-label Python objects are ever built:

- :data:`CountView`: samples, exemplars and histograms as empty messages. Serialized, each one is exactly
  the two bytes ``<tag> 00`` (a zero length never follows a tag otherwise, and canonical varints never end
  in 00), so ``bytes.count`` gives exact totals;
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
    message("SeriesKey", [("labels", 1, _BYTES, "")])
    message("KeyView", [("timeseries", 1, _MESSAGE, "SeriesKey")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"remote_views.{name}"))
            for name in ("CountView", "KeyView")}


_CLASSES = _build()
CountView: Any = _CLASSES["CountView"]
KeyView: Any = _CLASSES["KeyView"]

SAMPLE_MARK, EXEMPLAR_MARK, HISTOGRAM_MARK = b"\x12\x00", b"\x1a\x00", b"\x22\x00"


def counts(raw: bytes) -> tuple[int, int, int, int, int]:
    """``(series, samples, exemplars, histograms, metadata)`` of a decoded WriteRequest.
    Raises google.protobuf.message.DecodeError on malformed wire data."""
    view = CountView.FromString(raw)
    view.DiscardUnknownFields()
    blob = view.SerializeToString()
    metadata = len(view.metadata)  # top-level field 3: also serialized as 1a 00
    return (len(view.timeseries), blob.count(SAMPLE_MARK), blob.count(EXEMPLAR_MARK) - metadata,
            blob.count(HISTOGRAM_MARK), metadata)


def series_keys(raw: bytes) -> Any:
    """A KeyView of a decoded WriteRequest: its ``timeseries`` hold only their labels (as raw bytes), and
    ``SerializeToString`` of each is that series' labels-only encoding."""
    view = KeyView.FromString(raw)
    view.DiscardUnknownFields()
    return view
