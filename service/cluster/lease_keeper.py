"""Keeps the membership lease alive from its own thread, so a busy event loop does not cost the node its lease.

Under load (a 10k-config convergence on a shared 2-core machine) the event loop and its gRPC channel fell
seconds behind; keepalives came later than the lease TTL, every claim went with the lease, and each node
re-registered and resharded from scratch, over and over. This thread renews the lease on its own blocking
gRPC channel every heartbeat period, but only while the event loop shows it is alive: its tick must be
younger than half the TTL. A node whose loop is frozen (the failure leases exist to detect) still loses its
lease on time. The membership heartbeat itself (record rewrite, lease loss handling) stays on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import grpc
from aetcd import rpc

from service.kv.config import EtcdConfig
from service.kv.etcd_conn import parse_endpoint
from service.log import get_logger

_log = get_logger("cluster.lease_keeper")


class LeaseKeeper:
    def __init__(self, etcd: EtcdConfig, *, period: float, ttl: float) -> None:
        self._etcd = etcd
        self.period = period
        self.ttl = ttl
        self.lease_id = 0  # 0: nothing to keep
        self.renewals = 0
        self._renewed: tuple[int, float] = (0, 0.0)  # (lease, monotonic time) of the last renewal
        self._alive_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick: asyncio.TimerHandle | None = None

    def watch(self, lease_id: int) -> None:
        self.lease_id = lease_id

    def renewed(self, lease_id: int) -> bool:
        """True while this thread renewed `lease_id` within the last heartbeat period (and etcd still had it)."""
        lease, at = self._renewed
        return lease == lease_id == self.lease_id and time.monotonic() - at < self.period * 1.5

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._alive_at = time.monotonic()
        self._beat()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self._alive_at = time.monotonic()
        # The thread renews only while this tick is younger than TTL/2: a tick every TTL/4 (at least the old
        # period/2, since TTL >= 2 periods) keeps that true on a live loop with the fewest wakeups.
        self._tick = asyncio.get_running_loop().call_later(max(self.ttl / 4, self.period / 2, 0.05), self._beat)

    async def stop(self) -> None:
        self.lease_id = 0
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join, 5.0)

    # --- the thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        channel, metadata = None, None
        index = 0
        while not self._stop.wait(self.period):
            lease = self.lease_id
            if not lease or time.monotonic() - self._alive_at >= self.ttl / 2:
                continue  # nothing to keep, or the loop looks frozen: let the lease expire
            try:
                if channel is None:
                    channel, metadata = self._connect(index)
                if self._renew(channel, metadata, lease):
                    self.renewals += 1
                    self._renewed = (lease, time.monotonic())
            except grpc.RpcError as exc:
                _log.warning("lease keepalive from the keeper thread failed", err=str(exc.code()))
                with contextlib.suppress(Exception):
                    channel.close()  # type: ignore[union-attr]
                channel, metadata = None, None
                index += 1  # the next endpoint next time
        if channel is not None:
            channel.close()

    def _connect(self, index: int) -> tuple[grpc.Channel, list[tuple[str, str]] | None]:
        etcd = self._etcd
        endpoints = list(etcd.endpoints)
        target, https = parse_endpoint(endpoints[index % len(endpoints)])
        if etcd.tls_enabled or https:
            def read(path: str) -> bytes | None:
                if not path:
                    return None
                with open(path, "rb") as fh:
                    return fh.read()

            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(etcd.tls_ca_path) if etcd.tls_enabled else None,
                private_key=read(etcd.tls_key_path) if etcd.tls_enabled else None,
                certificate_chain=read(etcd.tls_cert_path) if etcd.tls_enabled else None)
            options = [("grpc.ssl_target_name_override", etcd.tls_server_name)] if etcd.tls_server_name else []
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target)
        metadata = None
        if etcd.username:
            reply = rpc.AuthStub(channel).Authenticate(
                rpc.AuthenticateRequest(name=etcd.username, password=str(etcd.password)), timeout=self.period * 2)
            metadata = [("token", reply.token)]
        return channel, metadata

    def _renew(self, channel: grpc.Channel, metadata: list[tuple[str, str]] | None, lease: int) -> bool:
        """One keepalive on a new stream; False when etcd no longer has the lease."""
        responses = rpc.LeaseStub(channel).LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease)]),
                                                          timeout=max(self.period * 2, 1.0), metadata=metadata)
        for response in responses:
            if response.TTL <= 0:
                self.lease_id = 0  # gone: the membership heartbeat registers again
                return False
            return True
        return False
