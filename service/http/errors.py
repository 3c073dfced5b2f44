"""One HTTP error type, and the three ways the node renders it.

Handlers (and the layers that speak in HTTP terms: body limits, push decoding, parameter checks) raise
`HTTPError(status, message, headers)`. The route decides the body, never the raiser: `guarded(render,
translate)` wraps a handler, renders an `HTTPError` with the route's renderer, and hands any other exception
to the subsystem's `translate`, which maps its domain errors (KV store unreachable, WAL failed) to an
`HTTPError` or returns None to let it through. The renderers:

- `render_text`: the message and a newline as text/plain (Prometheus' and Loki's write handlers);
- `render_agent`: `{"status": "error", "data": {"error": ...}}` (the Agent API, SPEC §1-§2);
- `render_loggator`: `{"success": false, "error": ..., "code": ...}` (the log search API), the code named
  after the status.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from service.http.envelope import JSON, error

# The log search API's error codes, one per status it answers with.
LOGGATOR_CODES = {400: "INVALID_PARAMETER", 404: "NOT_FOUND", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR",
                  502: "UPSTREAM_ERROR", 503: "SERVICE_UNAVAILABLE"}


class HTTPError(Exception):
    """An answer other than success: its status, its message and any headers it needs (Retry-After)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


Renderer = Callable[[HTTPError], Response]
Translate = Callable[[Exception, Request], "HTTPError | None"]
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Response]])


def render_text(exc: HTTPError) -> Response:
    return PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=exc.headers or None)


def render_agent(exc: HTTPError) -> Response:
    response = error(exc.status, exc.message)
    response.headers.update(exc.headers)
    return response


def render_loggator(exc: HTTPError) -> Response:
    code = LOGGATOR_CODES.get(exc.status, "INTERNAL_ERROR")
    return Response(orjson.dumps({"success": False, "error": exc.message, "code": code}), status_code=exc.status,
                    media_type=JSON, headers=exc.headers or None)


async def not_found(request: Request, exc: Exception | None = None) -> Response:
    """Go's `http.NotFound` answer, for every path nothing serves (a Starlette 404 handler as well)."""
    return render_text(HTTPError(404, "404 page not found"))


def guarded(render: Renderer, translate: Translate | None = None) -> Callable[[Handler], Handler]:
    """Wraps a handler (a function or a method; the request is its last argument) so that every failure is
    answered with `render`: an HTTPError as raised, any other exception as `translate` maps it."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(*args: Any) -> Response:
            try:
                return await handler(*args)
            except HTTPError as exc:
                return render(exc)
            except Exception as exc:
                mapped = translate(exc, args[-1]) if translate is not None else None
                if mapped is None:
                    raise
                return render(mapped)

        return wrapped  # type: ignore[return-value]

    return decorate
