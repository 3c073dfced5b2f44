"""The log search API envelope (Loggator's documented one) and request parameter parsing.

`{"success": true, "data": ...}`; errors `{"success": false, "error": "<msg>", "code": "<CODE>"}`. Every bad
parameter is a 400 INVALID_PARAMETER whose message starts with the parameter's name.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.log import get_logger

_log = get_logger("logs.search")
JSON = "application/json"
STATUS = {"INVALID_PARAMETER": 400, "NOT_FOUND": 404, "INTERNAL_ERROR": 500, "SERVICE_UNAVAILABLE": 503}
MAX_TENANT = 150


class SearchAPIError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS[code]
        self.headers = dict(headers or {})


def invalid(message: str) -> SearchAPIError:
    return SearchAPIError("INVALID_PARAMETER", message)


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps({"success": True, "data": data}), status_code=status, media_type=JSON)


def fail(exc: SearchAPIError) -> Response:
    return Response(orjson.dumps({"success": False, "error": exc.message, "code": exc.code}),
                    status_code=exc.status, media_type=JSON, headers=exc.headers)


def handler(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turns SearchAPIError and unexpected failures into the error envelope."""

    @functools.wraps(fn)
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except SearchAPIError as exc:
            return fail(exc)
        except sqlite3.OperationalError as exc:
            _log.error("log search failed", err=str(exc), path=request.url.path)
            return fail(SearchAPIError("SERVICE_UNAVAILABLE", f"log store unavailable: {exc}"))
        except Exception as exc:  # the API answers every failure with its envelope
            _log.error("log search request failed", err=repr(exc), path=request.url.path)
            return fail(SearchAPIError("INTERNAL_ERROR", "internal error"))

    return wrapped


def tenant_of(request: Request) -> str:
    """X-Scope-OrgID as Loki reads it; absent means the default tenant ("")."""
    tenant = request.headers.get("x-scope-orgid", "").strip()
    if len(tenant) > MAX_TENANT or any(c in tenant for c in "/\\\x00") or tenant in (".", ".."):
        raise invalid("X-Scope-OrgID is not a valid tenant ID")
    return tenant


def int_param(params: Mapping[str, str], name: str, default: int | None = None, *, low: int | None = None,
              high: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            raise invalid(f"{name} must be between {low} and {high}")
        if low is not None:
            raise invalid(f"{name} must be at least {low}")
        raise invalid(f"{name} must be at most {high}")
    return value


def str_param(params: Mapping[str, str], name: str, *, max_len: int = 1000) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if len(raw) > max_len:
        raise invalid(f"{name} must be at most {max_len} characters")
    if "\x00" in raw:
        raise invalid(f"{name} must not contain NUL characters")
    return raw
