"""The Agent API envelope: {"status": "success"|"error", "data": ...} (SPEC §1-§2)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

JSON = "application/json"


class APIError(Exception):
    """Raised by handlers to answer with the error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def success(data: Any = None, status: int = 200) -> Response:
    body: dict[str, Any] = {"status": "success"}
    if data is not None:
        body["data"] = data
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"status": "error", "data": {"error": message}}), status_code=status,
                    media_type=JSON)
