"""Access to one Kubernetes API server: where it is, how to authenticate, and LIST / WATCH over aiohttp
through the shared HTTP client setup (service/http/client.py).

Three ways in, as Prometheus has them: `api_server` with the inline HTTP client settings, a kubeconfig file,
or the in-cluster service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under
/var/run/secrets/kubernetes.io/serviceaccount; the token file is re-read at each request, so rotated
tokens are picked up as client-go picks them up).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml

from service.config.http_client import Authorization, BasicAuth, HTTPClientFields, TLSConfig
from service.config.schema import Secret
from service.http.client import USER_AGENT, HTTPClient
from service.metrics.config.kubernetes import SERVICE_ACCOUNT_DIR, KubernetesSDConfig

ACCEPT = "application/json"
# Where each role's objects live: (API group path, resource, namespaced).
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "pods": ("/api/v1", "pods", True),
    "services": ("/api/v1", "services", True),
    "endpoints": ("/api/v1", "endpoints", True),
    "nodes": ("/api/v1", "nodes", False),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "ingresses": ("/apis/networking.k8s.io/v1", "ingresses", True),
}


class APIError(Exception):
    """A non-2xx answer from the API server; `status` 410 means the resourceVersion is too old."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and the client settings to reach it. `key` identifies the (server,
    credentials) pair without holding the credentials in clear: configs with equal keys share watches."""

    server: str
    client_fields: HTTPClientFields
    key: str

    def new_client(self) -> HTTPClient:
        return HTTPClient(self.client_fields, timeout=60.0, headers={"Accept": ACCEPT, "User-Agent": USER_AGENT})


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _client_fingerprint(f: HTTPClientFields) -> str:
    return _fingerprint(*((x.name, getattr(f, x.name)) for x in fields(HTTPClientFields)))


def access_for(cfg: KubernetesSDConfig) -> ClusterAccess:
    """ClusterAccess for a config (reads a kubeconfig file when one is named)."""
    if cfg.kubeconfig_file:
        return kubeconfig_access(cfg.kubeconfig_file)
    if cfg.api_server:
        base = HTTPClientFields(**{x.name: getattr(cfg, x.name) for x in fields(HTTPClientFields)})
        return ClusterAccess(cfg.api_server.rstrip("/"), base, _fingerprint(cfg.api_server, _client_fingerprint(base)))
    return in_cluster_access()


def in_cluster_access() -> ClusterAccess:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ValueError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
                         "KUBERNETES_SERVICE_PORT must be defined")
    if ":" in host:
        host = f"[{host}]"
    f = HTTPClientFields(authorization=Authorization(type="Bearer", credentials_file=f"{SERVICE_ACCOUNT_DIR}/token"),
                         tls_config=TLSConfig(ca_file=f"{SERVICE_ACCOUNT_DIR}/ca.crt"))
    return ClusterAccess(f"https://{host}:{port}", f, _fingerprint("in-cluster", host, port))


def own_namespace() -> str:
    with open(f"{SERVICE_ACCOUNT_DIR}/namespace", encoding="utf-8") as fh:
        text = fh.read()
    if not text:
        raise ValueError("could not read own namespace name (empty file)")
    return text


def _pem(data: str | None) -> str:
    return base64.b64decode(data).decode() if data else ""


def kubeconfig_access(path: str) -> ClusterAccess:
    """The current context of a kubeconfig file (server, CA, client certificate, token or basic auth)."""
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    def named(kind: str, name: str) -> dict[str, Any]:
        for entry in doc.get(kind + "s") or []:
            if entry.get("name") == name:
                return entry.get(kind) or {}
        raise ValueError(f"kubeconfig {path}: {kind} {name!r} not found")
    ctx = named("context", doc.get("current-context", ""))
    cluster = named("cluster", ctx.get("cluster", ""))
    user = named("user", ctx["user"]) if ctx.get("user") else {}
    base_dir = os.path.dirname(os.path.abspath(path))
    def rel(p: str) -> str:
        return p if not p or os.path.isabs(p) else os.path.join(base_dir, p)
    tls = TLSConfig(ca=_pem(cluster.get("certificate-authority-data")),
                    ca_file=rel(cluster.get("certificate-authority", "")),
                    cert=_pem(user.get("client-certificate-data")),
                    cert_file=rel(user.get("client-certificate", "")),
                    key=Secret(_pem(user.get("client-key-data"))), key_file=rel(user.get("client-key", "")),
                    server_name=cluster.get("tls-server-name", ""),
                    insecure_skip_verify=bool(cluster.get("insecure-skip-tls-verify", False)))
    f = HTTPClientFields(tls_config=tls)
    if user.get("token"):
        f.authorization = Authorization(type="Bearer", credentials=Secret(user["token"]))
    elif user.get("tokenFile"):
        f.authorization = Authorization(type="Bearer", credentials_file=rel(user["tokenFile"]))
    elif user.get("username"):
        f.basic_auth = BasicAuth(username=user["username"], password=Secret(user.get("password", "")))
    server = str(cluster.get("server", "")).rstrip("/")
    if not server:
        raise ValueError(f"kubeconfig {path}: cluster has no server")
    return ClusterAccess(server, f, _fingerprint("kubeconfig", server, _client_fingerprint(f)))


def resource_path(resource: str, namespace: str) -> str:
    group, name, namespaced = RESOURCES[resource]
    if namespaced and namespace:
        return f"{group}/namespaces/{namespace}/{name}"
    return f"{group}/{name}"


class APIClient:
    """LIST and WATCH against one API server, sharing one aiohttp session."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access
        self.http = access.new_client()

    def _url(self, path: str, params: dict[str, str]) -> str:
        query = urlencode({k: v for k, v in params.items() if v != ""})
        return f"{self.access.server}{path}" + (f"?{query}" if query else "")

    async def _error(self, resp: aiohttp.ClientResponse) -> APIError:
        body = await resp.read()
        try:
            message = orjson.loads(body).get("message", "")
        except (orjson.JSONDecodeError, AttributeError):
            message = body[:200].decode(errors="replace")
        return APIError(resp.status, message or resp.reason or "")

    async def list(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """One LIST, following `continue` tokens; returns the list object with every page's items."""
        session = await self.http.session()
        items: list[dict[str, Any]] = []
        query = {**params, "limit": "500"}
        while True:
            async with session.get(self._url(path, query), headers=await self.http.auth_headers(),
                                   **self.http.request_options()) as resp:
                if resp.status != 200:
                    raise await self._error(resp)
                page = orjson.loads(await resp.read())
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                page["items"] = items
                return page
            query = {**params, "limit": "500", "continue": token}

    async def watch(self, path: str, params: dict[str, str], timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        """The events of one WATCH request, until the server ends it (or the connection breaks)."""
        session = await self.http.session()
        query = {**params, "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        async with session.get(self._url(path, query), headers=await self.http.auth_headers(), timeout=timeout,
                               **self.http.request_options()) as resp:
            if resp.status != 200:
                raise await self._error(resp)
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
            if buffer.strip():
                yield orjson.loads(buffer)

    async def close(self) -> None:
        await self.http.close()
