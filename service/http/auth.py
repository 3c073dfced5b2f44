"""An optional credential requirement on the node's HTTP server (ours: `server.http_auth`).

Every path needs a valid bearer token or basic-auth user, except the open ones (`/-/ready`, `/-/healthy`,
`/ready` and, by default, `/metrics`), so probes and scrapers keep working. Secrets are compared in
constant time; token files are read at each check so rotation needs no reload.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from service.config.errors import ConfigError
from service.config.schema import Secret

ALWAYS_OPEN = ("/-/ready", "/-/healthy", "/ready")


@dataclass
class HTTPAuthConfig:
    __yaml_type__ = "server.HTTPAuthConfig"

    bearer_tokens: list[Secret] = field(default_factory=list)
    bearer_token_file: str = ""  # one token per line
    basic_auth_users: dict[str, Secret] = field(default_factory=dict)
    open_paths: list[str] = field(default_factory=lambda: ["/metrics"])

    def check(self) -> None:
        if any(not t for t in self.bearer_tokens):
            raise ConfigError("http_auth.bearer_tokens must not hold empty tokens")
        if any(not p for p in self.basic_auth_users.values()):
            raise ConfigError("http_auth.basic_auth_users must not hold empty passwords")

    @property
    def enabled(self) -> bool:
        return bool(self.bearer_tokens or self.bearer_token_file or self.basic_auth_users)

    def tokens(self) -> list[str]:
        tokens = [str(t) for t in self.bearer_tokens]
        if self.bearer_token_file:
            try:
                with open(self.bearer_token_file, encoding="utf-8") as fh:
                    tokens.extend(line.strip() for line in fh if line.strip())
            except OSError:
                pass  # an unreadable file grants nothing
        return tokens


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def authorized(cfg: HTTPAuthConfig, header: str) -> bool:
    """Whether the Authorization header holds valid credentials; anything malformed is simply not valid
    (a 401, never an error)."""
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        return any(_equal(credentials, token) for token in cfg.tokens())
    if scheme == "basic" and cfg.basic_auth_users and credentials.isascii():
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (ValueError, binascii.Error):  # not base64, or not UTF-8 (UnicodeDecodeError is a ValueError)
            return False
        user, _, password = decoded.partition(":")
        expected = cfg.basic_auth_users.get(user)
        return expected is not None and _equal(password, str(expected))
    return False


class RequireAuth:
    """ASGI middleware answering 401 (with WWW-Authenticate) to requests without valid credentials."""

    def __init__(self, app: ASGIApp, cfg: HTTPAuthConfig) -> None:
        self.app = app
        self.cfg = cfg
        self.open = (*ALWAYS_OPEN, *cfg.open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open:
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
        if authorized(self.cfg, header):
            await self.app(scope, receive, send)
            return
        challenge = 'Basic realm="scraping-service"' if self.cfg.basic_auth_users else 'Bearer realm="scraping-service"'
        message = "missing or invalid credentials" if header else "authentication required"
        if scope["path"].startswith("/agent/api/"):
            body = orjson.dumps({"status": "error", "data": {"error": message}})
            ctype = b"application/json"
        else:
            body, ctype = message.encode(), b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", ctype), (b"www-authenticate", challenge.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
