"""The node-to-node HTTP path: one client for every request a node sends to another node of its cluster.

Write forwarding and cluster-wide log search both use it. Peers present the certificate every node serves;
this node shows its own as a client certificate, so peers that require one accept it, and it trusts the
client CA (in a cluster, the one CA). A request a node sends to a peer carries ``PEER_HEADER``, so the peer
answers it from its own data and never passes it on again: no loops, whatever the peers think of the ring.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from service.config.http_client import HTTPClientFields, TLSConfig
from service.http.client import HTTPClient
from service.http.tls import ServerTLSConfig

PEER_HEADER = "X-Scraping-Service-Forwarded"


class PeerClient:
    """One shared aiohttp session to the other nodes, made at first use (most nodes never need it)."""

    def __init__(self, server_tls: ServerTLSConfig | None = None, timeout: float = 30.0) -> None:
        tls = server_tls if server_tls is not None and server_tls.enabled else None
        self.scheme = "https" if tls is not None else "http"
        self._fields = HTTPClientFields(tls_config=TLSConfig(
            ca_file=tls.client_ca_file, cert_file=tls.cert_file, key_file=tls.key_file)) if tls is not None else None
        self._timeout = timeout
        self._client: HTTPClient | None = None

    def url(self, address: str, path: str) -> str:
        return f"{self.scheme}://{address}{path}"

    async def session(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = HTTPClient(self._fields, timeout=self._timeout)
        return await self._client.session()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


async def get_json(client: PeerClient, address: str, path: str, headers: dict[str, str],
                   timeout: float) -> tuple[int, object]:
    """GET `path` from the peer at `address`: (status, decoded JSON body). Raises OSError, TimeoutError,
    aiohttp.ClientError or ValueError (not JSON) when there is no usable answer."""
    session = await client.session()
    async with asyncio.timeout(timeout), session.get(client.url(address, path), headers=headers,
                                                     allow_redirects=False) as resp:
        body = await resp.read()
        return resp.status, orjson.loads(body)
