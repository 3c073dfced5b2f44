"""Forwarding a remote write to the node that runs its instance.

Behind a load balancer a sender reaches any node, while an instance runs on one. A node that receives a
write for an instance another ACTIVE node owns passes the body on to that node's same URL, unchanged, and
answers with the owner's answer; so the sender's retries and the owner's fsync-before-204 still decide what
is acknowledged. A forwarded request carries `X-Scraping-Service-Forwarded` and is never forwarded again:
while nodes disagree about the ring, the receiving node asks the sender to retry (503) instead of bouncing
it. A failed forward (owner unreachable, timed out) is a 503 as well: nothing is acknowledged that was not
stored.
"""

from __future__ import annotations

import aiohttp
from prometheus_client import Counter
from starlette.responses import Response

from service.http.client import HTTPClient, HTTPClientError
from service.http.tls import ServerTLSConfig
from service.metrics.config.http_client import HTTPClientFields, TLSConfig

FORWARDED_HEADER = "X-Scraping-Service-Forwarded"
# What a remote write request carries that the owner needs; everything else (Host, Content-Length) is new.
_PASSED_REQUEST_HEADERS = ("content-type", "content-encoding", "x-prometheus-remote-write-version",
                           "authorization", "user-agent", "x-scope-orgid")
_PASSED_RESPONSE_HEADERS = ("content-type", "retry-after")

FORWARDED = Counter("agent_remote_write_receiver_forwarded_requests_total",
                    "Remote write requests passed on to the node that runs their instance, by the owner's "
                    "HTTP status code (503 when it could not be reached).", ["code"])


class WriteForwarder:
    """Passes write requests on to other nodes over one shared aiohttp session."""

    def __init__(self, server_tls: ServerTLSConfig | None = None, timeout: float = 30.0) -> None:
        tls = server_tls if server_tls is not None and server_tls.enabled else None
        self.scheme = "https" if tls is not None else "http"
        # Peers present the certificate every node serves; this node shows its own as a client certificate,
        # so peers that require one accept it, and trusts the client CA (in a cluster, the one CA).
        self._fields = HTTPClientFields(tls_config=TLSConfig(
            ca_file=tls.client_ca_file, cert_file=tls.cert_file, key_file=tls.key_file)) if tls is not None else None
        self._timeout = timeout
        self._client: HTTPClient | None = None  # made at the first forward: most nodes never forward

    def _get_client(self) -> HTTPClient:
        if self._client is None:
            self._client = HTTPClient(self._fields, timeout=self._timeout)
        return self._client

    async def forward(self, address: str, raw_path: str, headers: dict[str, str], body: bytes,
                      owner: str) -> Response:
        passed = {k: v for k, v in headers.items() if k in _PASSED_REQUEST_HEADERS}
        passed[FORWARDED_HEADER] = "1"
        try:
            session = await self._get_client().session()
            async with session.post(f"{self.scheme}://{address}{raw_path}", data=body, headers=passed,
                                    allow_redirects=False) as resp:
                answer = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() in _PASSED_RESPONSE_HEADERS}
                FORWARDED.labels(str(resp.status)).inc()
                return Response(answer, status_code=resp.status, headers=out)
        except (TimeoutError, aiohttp.ClientError, OSError, HTTPClientError) as exc:
            FORWARDED.labels("503").inc()
            reason = str(exc) or type(exc).__name__
            message = f"could not forward to node {owner} at {address}, which runs this instance: {reason}"
            return Response(message + "\n", status_code=503, media_type="text/plain",
                            headers={"Retry-After": "1"})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
