"""gRPC connections to an etcd cluster: endpoints with failover, TLS, auth tokens, and error mapping.

The channels use aetcd's generated etcd v3 stubs directly (aetcd's own Client dials one insecure endpoint).
Channels connect lazily and reconnect in the background with a short backoff, so an RPC against an
unreachable endpoint fails at once (or at its deadline), and recovery after etcd returns takes about a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from aetcd import rpc

from service.kv.store import Compacted, KVError, KVUnavailable, LeaseExpired

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


def channel_options(dial_timeout: float) -> list[tuple[str, int]]:
    return [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # grpc-core also uses this as the least time one connection attempt may take: the dial timeout
        ("grpc.min_reconnect_backoff_ms", max(100, int(dial_timeout * 1000))),
        ("grpc.keepalive_time_ms", 10_000),  # etcd rejects pings more often than every 5 s
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
    ]


def map_error(exc: grpc.aio.AioRpcError, what: str) -> KVError:
    """An etcd gRPC error as a KV error: anything about reaching the cluster is KVUnavailable."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
        return LeaseExpired(f"{what}: {details}")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return Compacted(f"{what}: {details}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return KVError(f"{what}: {code.name}: {details}")
    return KVUnavailable(f"{what}: etcd {code.name}: {details}")


@dataclass
class Endpoint:
    target: str
    channel: grpc.aio.Channel
    kv: rpc.KVStub
    lease: rpc.LeaseStub
    watch: rpc.WatchStub
    auth: rpc.AuthStub

    def ready_or_connecting(self) -> bool:
        state = self.channel.get_state(try_to_connect=True)
        return state != grpc.ChannelConnectivity.TRANSIENT_FAILURE


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """'https://h:p' -> ('h:p', True); 'http://h:p' or 'h:p' -> ('h:p', False)."""
    endpoint = endpoint.strip().rstrip("/")
    if endpoint.startswith("https://"):
        return endpoint[len("https://"):], True
    if endpoint.startswith("http://"):
        return endpoint[len("http://"):], False
    return endpoint, False


class EtcdConnection:
    """Channels to every endpoint; calls go to the current one and fail over to the next on UNAVAILABLE."""

    def __init__(self, endpoints: list[str], *, dial_timeout: float, username: str, password: str,
                 ca_file: str, cert_file: str, key_file: str, request_timeout: float) -> None:
        if not endpoints:
            raise KVError("etcd: no endpoints configured")
        self._endpoint_specs = [parse_endpoint(e) for e in endpoints]
        self._dial_timeout = dial_timeout
        self._username = username
        self._password = password
        self._ca_file, self._cert_file, self._key_file = ca_file, cert_file, key_file
        self.request_timeout = request_timeout
        self._endpoints: list[Endpoint] = []
        self._current = 0
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()

    def open(self) -> None:
        if self._endpoints:
            return
        credentials = self._credentials()
        options = channel_options(self._dial_timeout)
        for target, https in self._endpoint_specs:
            if credentials is not None or https:
                channel = grpc.aio.secure_channel(target, credentials or grpc.ssl_channel_credentials(),
                                                  options=options)
            else:
                channel = grpc.aio.insecure_channel(target, options=options)
            self._endpoints.append(Endpoint(target, channel, rpc.KVStub(channel), rpc.LeaseStub(channel),
                                            rpc.WatchStub(channel), rpc.AuthStub(channel)))
            channel.get_state(try_to_connect=True)  # start dialling in the background

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if not (self._ca_file or self._cert_file or self._key_file):
            return None

        def read(path: str) -> bytes | None:
            if not path:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise KVError(f"etcd TLS: cannot read {path}: {exc}") from exc

        return grpc.ssl_channel_credentials(root_certificates=read(self._ca_file),
                                            private_key=read(self._key_file),
                                            certificate_chain=read(self._cert_file))

    async def close(self) -> None:
        endpoints, self._endpoints = self._endpoints, []
        for endpoint in endpoints:
            await endpoint.channel.close(grace=None)

    @property
    def closed(self) -> bool:
        return not self._endpoints

    def pick(self) -> Endpoint:
        """The current endpoint, moving past ones known to be failing when another might not be."""
        if not self._endpoints:
            raise KVUnavailable("etcd client is closed")
        for i in range(len(self._endpoints)):
            index = (self._current + i) % len(self._endpoints)
            if self._endpoints[index].ready_or_connecting():
                self._current = index
                break
        return self._endpoints[self._current]

    def failed(self, endpoint: Endpoint) -> None:
        """Move on from `endpoint` after it failed."""
        if self._endpoints and self._endpoints[self._current] is endpoint:
            self._current = (self._current + 1) % len(self._endpoints)

    async def metadata(self, endpoint: Endpoint, timeout: float) -> Metadata | None:
        if not self._username:
            return None
        async with self._auth_lock:
            if self._token is None:
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                response = await endpoint.auth.Authenticate(request, timeout=timeout)
                self._token = response.token
        return (("token", self._token),)

    def token_rejected(self, exc: grpc.aio.AioRpcError) -> bool:
        """True (and forget the token) when etcd refused our auth token, e.g. after it restarted."""
        if self._username and exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            self._token = None
            return True
        return False

    async def call(self, what: str, fn: Callable[[Endpoint, float, Metadata | None], Awaitable[T]], *,
                   idempotent: bool) -> T:
        """Run one RPC within request_timeout, failing over between endpoints.

        A non-idempotent call moves to another endpoint only when its channel was not connected, so a
        request that may have reached etcd is never sent twice."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        attempts = len(self._endpoints) + 1  # every endpoint once, plus one retry with a fresh token
        last: KVError = KVUnavailable(f"{what}: etcd request timed out after {self.request_timeout}s")
        for _ in range(attempts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            endpoint = self.pick()
            was_ready = endpoint.channel.get_state() == grpc.ChannelConnectivity.READY
            try:
                metadata = await self.metadata(endpoint, remaining)
                return await fn(endpoint, max(0.001, deadline - loop.time()), metadata)
            except grpc.aio.AioRpcError as exc:
                if self.token_rejected(exc):
                    continue
                last = map_error(exc, what)
                if not isinstance(last, KVUnavailable):
                    raise last from exc
                self.failed(endpoint)
                if not (idempotent or not was_ready):
                    raise last from exc
            except (TimeoutError, grpc.aio.UsageError) as exc:
                self.failed(endpoint)
                raise KVUnavailable(f"{what}: {exc!r}") from exc
        raise last
