"""ASGI middleware logging one structured line per request: method, path, status, duration.

As Grafana Agent's server (dskit) does: at debug level, and at warning level for 5xx answers, so a node at
the default `info` level does not write a line per remote write or push.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.requestmetrics import observe
from service.log import get_logger

_log = get_logger("http")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            observe(scope["path"], status)
            level = logging.WARNING if status >= 500 else logging.DEBUG
            if _log.isEnabledFor(level):
                _log.log(level, "request", method=scope["method"], path=scope["path"], status=status,
                         duration=f"{(time.perf_counter() - start) * 1000:.2f}ms")
