"""schemathesis hooks for tests/fuzz/test_schemathesis.py: raw bytes for the binary media types."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/x-protobuf")
def protobuf(ctx: Any, value: Any) -> bytes:
    """Bodies documented as binary protobuf are sent as generated (bytes, or the text's UTF-8)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


_INT64_PARAMS = ("offset", "bucket")


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    """Leave out search offset/bucket >= 2^63: defect 8 of issue 11, tested on its own (xfail) in
    test_known_defects.py. Remove this hook once that fix is merged."""
    for name in _INT64_PARAMS:
        value = (case.query or {}).get(name)
        try:
            if value is not None and abs(int(value)) >= 2**63:
                return False
        except (TypeError, ValueError):
            continue
    return True
