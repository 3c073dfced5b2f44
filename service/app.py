"""Builds the Starlette app from the subsystems' routes; the lifespan starts and stops the node."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router

from service.cluster.routes import cluster_routes
from service.config.errors import ConfigError
from service.http.access_log import AccessLog
from service.http.auth import RequireAuth
from service.http.errors import not_found
from service.log import get_logger
from service.logs.routes import logs_routes
from service.logs.search.chat.service import ChatService
from service.logs.search.routes import search_routes
from service.metrics.decode_pool import DecodePool, default_workers
from service.metrics.routes import metrics_api_routes
from service.node import Node
from service.ops.config_dump import config_routes
from service.ops.health import health_routes
from service.ops.integrations import integrations_routes
from service.ops.openapi import openapi_routes
from service.ops.reload import reload_routes
from service.ops.selfmetrics import metrics_routes
from service.ui.routes import ui_routes

_log = get_logger("app")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return Response(status_code=405)


async def _reload_quietly(node: Node) -> None:
    """SIGHUP: like /-/reload; a bad file is logged and the running config stays."""
    try:
        await node.reload()
    except ConfigError as exc:
        _log.error("reload on SIGHUP failed; the running config stays", err=str(exc))


def build_app(node: Node) -> AccessLog:
    """The node's ASGI app. `server.http_auth` is read once here: changing it needs a restart."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await node.start()
        except Exception as exc:  # e.g. a listener that cannot bind or load its certificate
            _log.error("node failed to start", err=str(exc))
            raise
        if decode_pool is not None:
            decode_pool.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload_quietly(node)))
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await node.stop()
            if decode_pool is not None:
                await decode_pool.stop()
            await chat.close()

    workers = node.cfg.metrics.ingest_workers
    workers = default_workers() if workers is None else workers
    decode_pool = DecodePool(workers) if workers else None  # read once: changing it needs a restart

    chat = ChatService(node.logs.search_store, node.chat_config(), cluster=node.search_cluster)
    routes = [
        *node.config_api.routes(),
        *metrics_api_routes(node.manager, router=node.write_router, decode_pool=decode_pool),
        *cluster_routes(lambda: node.cluster),
        *health_routes(lambda: node.ready),
        *reload_routes(node.reload),
        *config_routes(lambda: node.cfg, node.options.read_api_enabled),
        *metrics_routes(),
        *openapi_routes(),
        *integrations_routes(lambda: node.cfg.integrations, lambda: node.options.advertise_address),
        *logs_routes(node.logs),  # logs subsystem (hook)
        *search_routes(node.logs.search_store, status_provider=node.status, chat=chat, cluster=node.search_cluster),
        *ui_routes(node.all_targets, node.search_peers, node.write_forwarder.peers),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found,
                                                                         405: _method_not_allowed})
    router: Router = app.router
    router.redirect_slashes = False
    auth = node.cfg.server.http_auth
    return AccessLog(RequireAuth(app, auth) if auth.enabled else app)
