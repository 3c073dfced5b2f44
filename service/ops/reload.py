"""`GET|POST /-/reload` (and SIGHUP): re-read the node file and apply only what changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.config.errors import ConfigError
from service.log import get_logger

_log = get_logger("reload")


def reload_routes(reload: Callable[[], Awaitable[None]]) -> list[Route]:
    async def handle(request: Request) -> Response:
        try:
            await reload()
        except ConfigError as exc:
            _log.error("reload failed; the running config stays", err=str(exc))
            return Response(status_code=400)
        return Response(status_code=200)

    return [Route("/-/reload", handle, methods=["GET", "POST"])]
