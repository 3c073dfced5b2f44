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
