"""The Agent API envelope: {"status": "success"|"error", "data": ...} (docs/http-api.md). Handlers raise
`service.http.errors.HTTPError`; `render_agent` there answers it with `error()`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

JSON = "application/json"


def success(data: Any = None, status: int = 200) -> Response:
    body: dict[str, Any] = {"status": "success"}
    if data is not None:
        body["data"] = data
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"status": "error", "data": {"error": message}}), status_code=status,
                    media_type=JSON)
