"""A ``loki_push_api`` listener: a second uvicorn server in the node's process and loop, owned by its
logs instance (started and stopped with it), serving the Loki push routes with that target's rules."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp

from service.http.auth import HTTPAuthConfig, RequireAuth
from service.http.errors import not_found
from service.http.limits import ServerLimits, protocol_class
from service.http.tls import ServerTLSConfig
from service.log import get_logger
from service.logs import metrics
from service.logs.config import ScrapeConfig
from service.logs.grpc_server import GrpcPushServer, GrpcSettings
from service.logs.instance import LogsInstance, rules_for
from service.logs.push import PushRules
from service.logs.routes import push_routes


class _Server(uvicorn.Server):
    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await self._serve(sockets)  # no signal capture: the node's own server owns the signals


class PushServer:
    def __init__(self, instance: LogsInstance, sc: ScrapeConfig, http_auth: HTTPAuthConfig | None = None) -> None:
        """``http_auth``: the node's ``server.http_auth``, required on loki_push_api listeners too."""
        assert sc.loki_push_api is not None
        self.instance = instance
        self.http_auth = http_auth
        self.job = sc.job_name
        self.server_cfg = sc.loki_push_api.server
        self.rules: PushRules = rules_for(sc)
        self.limit = self.server_cfg.grpc_server_max_recv_msg_size
        self.port = 0
        self._server: _Server | None = None
        self.grpc: GrpcPushServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("logs.push_server", instance=instance.name, job=sc.job_name)

    def _resolve(self, request: Request) -> tuple[LogsInstance, PushRules, int]:
        return self.instance, self.rules, self.limit

    def _connections(self) -> int:
        return len(self._server.server_state.connections) if self._server is not None else 0

    async def start(self) -> None:
        cfg = self.server_cfg
        host = cfg.http_listen_address or "0.0.0.0"
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, cfg.http_listen_port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"loki_push_api {self.job}: cannot listen on "
                                     f"{host}:{cfg.http_listen_port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        app: ASGIApp = Starlette(routes=push_routes(self._resolve), exception_handlers={404: not_found})
        auth = self.http_auth
        if auth is not None and auth.enabled:
            app = RequireAuth(app, auth)
        tls = cfg.http_tls_config or ServerTLSConfig()
        http = protocol_class(ServerLimits())  # header size and time limits, graceful 413 (as the main port)
        config = uvicorn.Config(app, lifespan="off", http=http, access_log=False, log_config=None,
                                server_header=False, timeout_graceful_shutdown=float(cfg.graceful_shutdown_timeout),
                                timeout_keep_alive=int(cfg.http_server_idle_timeout) or 5, **tls.uvicorn_options())
        try:
            tls.load(config)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise OSError(f"loki_push_api {self.job}: cannot load the TLS certificate or key: {exc}") from None
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"loki-push[{self.job}]")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"loki_push_api {self.job}: server exited during startup")
            await asyncio.sleep(0.005)
        metrics.add_connection_source(self._connections)
        self._log.info("loki_push_api listening", address=f"{host}:{self.port}", tls=tls.enabled,
                       auth=auth is not None and auth.enabled)
        if cfg.grpc_listen_port:
            grpc_server = GrpcPushServer(GrpcSettings(
                f"loki_push_api {self.job}", cfg.grpc_listen_address or host, cfg.grpc_listen_port,
                cfg.grpc_tls_config or tls, auth, self.limit, cfg.grpc_server_max_send_msg_size,
                cfg.grpc_server_max_concurrent_streams, float(cfg.graceful_shutdown_timeout)),
                lambda: (self.instance, self.rules, self.limit))
            try:
                await grpc_server.start()
            except BaseException:
                await self.stop()
                raise
            self.grpc = grpc_server

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop()
            self.grpc = None
        metrics.remove_connection_source(self._connections)
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), float(self.server_cfg.graceful_shutdown_timeout) + 1)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None
