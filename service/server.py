"""Runs the node's app under uvicorn (httptools + uvloop, see docs/architecture.md)."""

from __future__ import annotations

import contextlib
import signal
import ssl
from collections.abc import Iterator
from types import FrameType

import uvicorn

from service import gcpacing, mallocpacing
from service.app import build_app
from service.http.limits import ServerLimits, effective_conn_limit, protocol_class, raise_fd_limit
from service.log import get_logger
from service.node import Node, NodeOptions
from service.settings import NodeConfig

_log = get_logger("server")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown; a node that shut down cleanly exits 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            _log.info("shutting down: no new connections; in-flight requests get up to the deadline",
                      signal=signal.Signals(sig).name, phase="http",
                      deadline=f"{self.config.timeout_graceful_shutdown or 0:g}s")
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def server_limits(cfg: NodeConfig) -> ServerLimits:
    """The HTTP port's limits from `server.*`, the connection limit kept below the open-files limit."""
    server = cfg.server
    fd_limit = raise_fd_limit()
    conn_limit = effective_conn_limit(server.http_listen_conn_limit, fd_limit)
    if server.http_listen_conn_limit and conn_limit < server.http_listen_conn_limit:
        _log.warning("http_listen_conn_limit lowered to fit the open-files limit", configured=
                     server.http_listen_conn_limit, limit=conn_limit, open_files=fd_limit)
    return ServerLimits(max_header_bytes=server.http_server_max_header_bytes,
                        read_header_timeout=float(server.http_server_read_header_timeout),
                        conn_limit=conn_limit)


def serve(cfg: NodeConfig, options: NodeOptions, host: str, port: int) -> int:
    if not options.advertise_address:
        options.advertise_address = f"{host}:{port}"
    mallocpacing.pace()  # the process's own node only (not in-process tests): see mallocpacing.py
    node = Node(cfg, options)
    config = uvicorn.Config(
        build_app(node),
        host=host,
        port=port,
        loop="uvloop",
        http=protocol_class(server_limits(cfg)),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=float(cfg.server.graceful_shutdown_timeout),
        **cfg.server.http_tls_config.uvicorn_options(),
    )
    try:
        cfg.server.http_tls_config.load(config)
    except (OSError, ssl.SSLError) as exc:
        _log.error("cannot load the TLS certificate or key", cert_file=cfg.server.http_tls_config.cert_file,
                   key_file=cfg.server.http_tls_config.key_file, err=str(exc))
        return 1
    server = _Server(config)
    gcpacing.pace()  # the process's own node only (not in-process tests): see gcpacing.py
    _log.info("starting", address=f"{host}:{port}")
    try:
        server.run()
    except SystemExit:  # uvicorn's exit after a failed startup (logged by the app): exit 1 like other errors
        return 1
    if not server.started:
        _log.error("server did not start", address=f"{host}:{port}")
        return 1
    return 0
