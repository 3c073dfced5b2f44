"""The log search API envelope (Loggator's documented one) and request parameter parsing.

`{"success": true, "data": ...}`; errors `{"success": false, "error": "<msg>", "code": "<CODE>"}`, rendered by
`service.http.errors.render_loggator` from an HTTPError (the code follows the status). Every bad parameter is
a 400 INVALID_PARAMETER whose message starts with the parameter's name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.http.envelope import JSON
from service.http.errors import HTTPError, guarded, render_loggator
from service.log import get_logger

_log = get_logger("logs.search")
MAX_TENANT = 150


def invalid(message: str) -> HTTPError:
    """A bad parameter: 400 INVALID_PARAMETER."""
    return HTTPError(400, message)


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps({"success": True, "data": data}), status_code=status, media_type=JSON)


def _http_error(exc: Exception, request: Request) -> HTTPError:
    """The API answers every failure with its envelope: a store that cannot be read 503, anything else 500."""
    if isinstance(exc, sqlite3.OperationalError):
        _log.error("log search failed", err=str(exc), path=request.url.path)
        return HTTPError(503, f"log store unavailable: {exc}")
    _log.error("log search request failed", err=repr(exc), path=request.url.path)
    return HTTPError(500, "internal error")


handler = guarded(render_loggator, _http_error)


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
