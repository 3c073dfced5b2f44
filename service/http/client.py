"""The one aiohttp client setup used by scrape, remote_write and the Loki client.

`HTTPClient(fields)` turns Prometheus' HTTP client settings (basic_auth, authorization / bearer_token,
oauth2 client credentials, tls_config, proxy_url, follow_redirects) into a session plus per-request
headers. Files (`password_file`, `credentials_file`, `bearer_token_file`, `client_secret_file`) are read at
each request, as Prometheus does, so rotated secrets are picked up.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from service.config.http_client import HTTPClientFields, TLSConfig

USER_AGENT = "scraping-service/0.1.0"
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}


class HTTPClientError(Exception):
    """Settings that cannot be turned into a client (an unreadable file, a bad certificate)."""


def _read_secret_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise HTTPClientError(f"unable to read {path}: {exc.strerror}") from None


def ssl_context(tls: TLSConfig | None) -> ssl.SSLContext | None:
    """An SSL context for the settings, or None for the defaults (system CAs, full verification)."""
    if tls is None or tls == TLSConfig():
        return None
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file or None, cadata=tls.ca or None)
    except (OSError, ssl.SSLError) as exc:
        what = f"ca_file {tls.ca_file}" if tls.ca_file else "ca"
        raise HTTPClientError(f"unable to load {what}: {getattr(exc, 'strerror', None) or exc}") from None
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.min_version:
        ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version:
        ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    try:
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
        elif tls.cert:
            _load_pem_pair(ctx, tls.cert, str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        where = f"{tls.cert_file} (key {tls.key_file or tls.cert_file})" if tls.cert_file else "(inline cert)"
        raise HTTPClientError(f"unable to load client certificate {where}: {exc}") from None
    return ctx


def _load_pem_pair(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    import os
    import tempfile

    # ssl only loads key pairs from files: write them to a private temporary file and remove it at once.
    fd, path = tempfile.mkstemp(prefix="tls-", suffix=".pem")
    try:
        os.write(fd, (cert.strip() + "\n" + key.strip() + "\n").encode())
        os.close(fd)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


class _OAuth2Token:
    """Client-credentials token cache for `oauth2`."""

    def __init__(self) -> None:
        self.token = ""
        self.expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self, client: HTTPClient) -> str:
        oauth = client.fields.oauth2
        assert oauth is not None
        async with self._lock:
            if self.token and time.monotonic() < self.expires - 10:
                return self.token
            secret = _read_secret_file(oauth.client_secret_file) if oauth.client_secret_file else str(
                oauth.client_secret)
            form = {"grant_type": "client_credentials", **oauth.endpoint_params}
            if oauth.scopes:
                form["scope"] = " ".join(oauth.scopes)
            session = await client.session()
            async with session.post(oauth.token_url, data=form, auth=aiohttp.BasicAuth(oauth.client_id, secret),
                                    ssl=ssl_context(oauth.tls_config) or True,
                                    proxy=oauth.proxy_url or None) as resp:
                body = await resp.read()
                if resp.status // 100 != 2:
                    raise HTTPClientError(f"oauth2 token request failed: HTTP {resp.status}")
            data = orjson.loads(body)
            self.token = data["access_token"]
            self.expires = time.monotonic() + float(data.get("expires_in", 3600))
            return self.token


class HTTPClient:
    """A lazily created aiohttp session with the settings' TLS, proxy and auth."""

    def __init__(self, fields: HTTPClientFields | None = None, *, timeout: float = 30.0,
                 headers: Mapping[str, str] | None = None, limit: int = 100) -> None:
        self.fields = fields or HTTPClientFields()
        self.timeout = timeout
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._ssl = ssl_context(self.fields.tls_config)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._oauth = _OAuth2Token() if self.fields.oauth2 is not None else None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl if self._ssl is not None else True,
                                             enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self.headers,
                trust_env=self.fields.proxy_from_environment,
                auto_decompress=True,
                skip_auto_headers=("Content-Type",),
            )
        return self._session

    async def auth_headers(self) -> dict[str, str]:
        """Authorization for one request, from the settings (files read now)."""
        f = self.fields
        if f.basic_auth is not None:
            password = _read_secret_file(f.basic_auth.password_file) if f.basic_auth.password_file else str(
                f.basic_auth.password)
            username = (_read_secret_file(f.basic_auth.username_file) if f.basic_auth.username_file
                        else f.basic_auth.username)
            return {"Authorization": aiohttp.encode_basic_auth(username, password)}
        auth = f.effective_authorization()
        if auth is not None:
            creds = _read_secret_file(auth.credentials_file) if auth.credentials_file else str(auth.credentials)
            return {"Authorization": f"{auth.type or 'Bearer'} {creds}"}
        if self._oauth is not None:
            return {"Authorization": f"Bearer {await self._oauth.get(self)}"}
        return {}

    def request_options(self) -> dict[str, Any]:
        """Keyword arguments for session.request() that follow the settings."""
        options: dict[str, Any] = {"allow_redirects": self.fields.follow_redirects}
        if self.fields.proxy_url:
            options["proxy"] = self.fields.proxy_url
        return options

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
