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

from service.http.client import HTTPClientError
from service.http.errors import HTTPError, render_text
from service.http.peers import PEER_HEADER, PeerClient
from service.http.tls import ServerTLSConfig

FORWARDED_HEADER = PEER_HEADER
# What a remote write request carries that the owner needs; everything else (Host, Content-Length) is new.
_PASSED_REQUEST_HEADERS = ("content-type", "content-encoding", "x-prometheus-remote-write-version",
                           "authorization", "user-agent", "x-scope-orgid")
_PASSED_RESPONSE_HEADERS = ("content-type", "retry-after")

FORWARDED = Counter("agent_remote_write_receiver_forwarded_requests_total",
                    "Remote write requests passed on to the node that runs their instance, by the owner's "
                    "HTTP status code (503 when it could not be reached).", ["code"])


class WriteForwarder:
    """Passes write requests on to other nodes over the node-to-node client (service/http/peers.py)."""

    def __init__(self, server_tls: ServerTLSConfig | None = None, timeout: float = 30.0) -> None:
        self.peers = PeerClient(server_tls, timeout)

    async def forward(self, address: str, raw_path: str, headers: dict[str, str], body: bytes,
                      owner: str) -> Response:
        passed = {k: v for k, v in headers.items() if k in _PASSED_REQUEST_HEADERS}
        passed[FORWARDED_HEADER] = "1"
        try:
            session = await self.peers.session()
            async with session.post(self.peers.url(address, raw_path), data=body, headers=passed,
                                    allow_redirects=False) as resp:
                answer = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() in _PASSED_RESPONSE_HEADERS}
                FORWARDED.labels(str(resp.status)).inc()
                return Response(answer, status_code=resp.status, headers=out)
        except (TimeoutError, aiohttp.ClientError, OSError, HTTPClientError) as exc:
            FORWARDED.labels("503").inc()
            reason = str(exc) or type(exc).__name__
            message = f"could not forward to node {owner} at {address}, which runs this instance: {reason}"
            return render_text(HTTPError(503, message, {"Retry-After": "1"}))

    async def close(self) -> None:
        await self.peers.close()
