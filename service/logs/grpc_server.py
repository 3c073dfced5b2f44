"""gRPC ``logproto.Pusher/Push`` on a ``loki_push_api`` listener's ``server.grpc_listen_port`` and on the
node's own ``server.grpc_listen_port``.

grpcio's asyncio server (``grpc.aio``) in the node's loop: bench/grpc_libs.py measured it at ~1.8x the pushes
of grpclib for ~40% less CPU per push. The method is served as a generic handler on raw bytes, so no
service descriptor or generated stub is needed: the request bytes go through the same path as an HTTP
protobuf push (:meth:`LogsInstance.accept`: labels, relabel rules, ``__`` removal, timestamps, WAL fsync
before the answer), snappy-framed as that path expects them.

Answers: OK (an empty PushResponse) only once the WAL holds the push; INVALID_ARGUMENT naming the field for
bad input (the other streams of a push are stored, as over HTTP); RESOURCE_EXHAUSTED past
``grpc_server_max_recv_msg_size``; UNAVAILABLE with retry information where HTTP answers 429/503;
UNAUTHENTICATED without the node's ``server.http_auth`` credentials in the ``authorization`` metadata.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import snappy

from service.http.auth import HTTPAuthConfig, authorized
from service.http.errors import HTTPError
from service.http.tls import ServerTLSConfig
from service.log import get_logger
from service.logs import metrics
from service.logs.push import NoPushTarget, PushRules, check_tenant
from service.logs.wire import field_bytes
from service.logs.wire_errors import push_request_error
from service.proto.wire import encode_varint
from service.wal import WALError

if TYPE_CHECKING:
    from service.logs.instance import LogsInstance

SERVICE, METHOD = "logproto.Pusher", "Push"
ROUTE = f"/{SERVICE}/{METHOD}"
_PROTO = "application/x-protobuf"
_RETRY_INFO = b"type.googleapis.com/google.rpc.RetryInfo"

Resolve = Callable[[], "tuple[LogsInstance, PushRules, int]"]
"""(instance, rules, max message size) for a call, or NoPushTarget (as the HTTP push's resolver)."""


@dataclass
class GrpcSettings:
    """Where and how one gRPC push port listens."""

    name: str  # for logs and errors: "loki_push_api <job>" or "server"
    host: str
    port: int
    tls: ServerTLSConfig
    auth: HTTPAuthConfig | None
    max_recv_msg_size: int
    max_send_msg_size: int = 4 << 20
    max_concurrent_streams: int = 100
    graceful_shutdown_timeout: float = 30.0


def status_label(code: grpc.StatusCode) -> str:
    """The ``status_code`` label of a call as dskit's gRPC instrumentation writes it: "success", else the
    code's Go name (``InvalidArgument``, ``ResourceExhausted``, ...)."""
    if code is grpc.StatusCode.OK:
        return "success"
    if code is grpc.StatusCode.CANCELLED:
        return "cancel"
    return "".join(part.capitalize() for part in code.name.split("_"))


def retry_details(code: grpc.StatusCode, message: str, seconds: int) -> bytes:
    """``grpc-status-details-bin``: a google.rpc.Status carrying a google.rpc.RetryInfo (retry_delay)."""
    retry_info = field_bytes(0x0A, b"\x08" + encode_varint(seconds))  # RetryInfo.retry_delay: Duration{seconds}
    detail = field_bytes(0x0A, _RETRY_INFO) + field_bytes(0x12, retry_info)  # google.protobuf.Any
    return b"\x08" + encode_varint(code.value[0]) + field_bytes(0x12, message.encode()) + field_bytes(0x1A, detail)


def server_credentials(tls: ServerTLSConfig) -> grpc.ServerCredentials:
    """The listener's TLS as grpcio credentials (OSError when a file cannot be read, ValueError when a
    setting has no gRPC equivalent here)."""
    if tls.min_version == "TLS13":
        raise ValueError("min_version TLS13 cannot be enforced on the gRPC port (it offers TLS 1.2 and 1.3)")
    if tls.client_auth_type == "RequireAnyClientCert":
        raise ValueError("client_auth_type RequireAnyClientCert is not available on the gRPC port: "
                         "use RequireAndVerifyClientCert")
    with open(tls.key_file, "rb") as key, open(tls.cert_file, "rb") as cert:
        pair = (key.read(), cert.read())
    verify = tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    ca = None
    if verify:
        with open(tls.client_ca_file, "rb") as fh:
            ca = fh.read()
    return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                       require_client_auth=tls.client_auth_type == "RequireAndVerifyClientCert")


def bind_error(host: str, port: int) -> str:
    """Why ``host:port`` cannot be bound, as the OS says it (grpcio's own error names no reason)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return "refused by the gRPC library"


class GrpcPushServer:
    """One gRPC push port: a ``loki_push_api`` listener's (started and stopped with its HTTP side) or the
    node's ``server.grpc_listen_port``."""

    def __init__(self, settings: GrpcSettings, resolve: Resolve) -> None:
        self.settings = settings
        self.resolve = resolve
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._log = get_logger("logs.grpc_server", listener=settings.name)

    async def start(self) -> None:
        cfg = self.settings
        host = cfg.host
        address = f"[{host}]:{cfg.port}" if ":" in host else f"{host}:{cfg.port}"
        where = f"{cfg.name}: gRPC"
        try:
            creds = server_credentials(cfg.tls) if cfg.tls.enabled else None
        except (OSError, ValueError) as exc:
            raise OSError(f"{where}: cannot use the TLS settings: {exc}") from None
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),  # a port in use is an error, never shared with another process
            ("grpc.max_receive_message_length", cfg.max_recv_msg_size),
            ("grpc.max_send_message_length", cfg.max_send_msg_size),
            ("grpc.max_concurrent_streams", cfg.max_concurrent_streams),
        ])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(self._push)})])
        try:
            port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        except RuntimeError:  # grpcio does not say why
            port = 0
        if not port:  # (older grpcio reports a failed bind as port 0)
            raise OSError(f"{where}: cannot listen on {address}: {bind_error(host, cfg.port)}")
        await server.start()
        self._server, self.port = server, port
        self._log.info("gRPC push listening", address=f"{host}:{port}", tls=creds is not None,
                       auth=cfg.auth is not None and cfg.auth.enabled)

    async def stop(self) -> None:
        if self._server is None:
            return
        await self._server.stop(self.settings.graceful_shutdown_timeout)
        self._server = None

    async def _push(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        start = time.perf_counter()
        metadata = {m.key: m.value for m in context.invocation_metadata() or ()}
        code, message, trailers = await self._answer(raw, metadata)
        labels = ("gRPC", ROUTE)
        metrics.REQUEST_DURATION.labels(*labels, status_label(code), "false").observe(time.perf_counter() - start)
        metrics.REQUEST_BYTES.labels(*labels).observe(len(raw))
        metrics.RESPONSE_BYTES.labels(*labels).observe(0)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message, trailers)
        return b""  # an empty PushResponse

    async def _answer(self, raw: bytes, metadata: dict[str, str | bytes]) -> tuple[grpc.StatusCode, str, tuple]:
        """(status, message, trailing metadata) of one push; OK only after the WAL fsync covering it."""
        auth = self.settings.auth
        if auth is not None and auth.enabled:
            header = metadata.get("authorization", "")
            if not isinstance(header, str) or not authorized(auth, header):
                return (grpc.StatusCode.UNAUTHENTICATED,
                        "missing or invalid credentials" if header else "authentication required", ())
        header = metadata.get("x-scope-orgid")
        try:
            tenant = check_tenant(header if isinstance(header, str) else None)
        except HTTPError as exc:
            return grpc.StatusCode.INVALID_ARGUMENT, f"x-scope-orgid: {exc.message}", ()
        try:
            instance, rules, limit = self.resolve()
            instance.check_capacity()
            errors = await instance.accept(rules, snappy.compress(raw), _PROTO, None, limit, tenant)
        except NoPushTarget as exc:
            return self._push_error(HTTPError(400, str(exc)), raw)
        except HTTPError as exc:  # a refused push, or Overloaded (503/429 with its Retry-After)
            return self._push_error(exc, raw)
        except WALError as exc:
            return grpc.StatusCode.INTERNAL, f"WAL append failed: {exc}", ()
        if errors:
            return grpc.StatusCode.INVALID_ARGUMENT, f"streams: {errors[-1]}", ()
        return grpc.StatusCode.OK, "", ()

    def _push_error(self, exc: HTTPError, raw: bytes) -> tuple[grpc.StatusCode, str, tuple]:
        if exc.status == 413:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, ()
        if exc.status in (429, 503):
            return self._unavailable(exc.message, int(exc.headers.get("Retry-After", "1")))
        where = push_request_error(raw)  # upb's own message names no field
        return grpc.StatusCode.INVALID_ARGUMENT, where or exc.message, ()

    @staticmethod
    def _unavailable(message: str, retry_after: int) -> tuple[grpc.StatusCode, str, tuple]:
        code = grpc.StatusCode.UNAVAILABLE
        return code, message, (("grpc-retry-pushback-ms", str(retry_after * 1000)),
                               ("grpc-status-details-bin", retry_details(code, message, retry_after)))
