"""Prometheus' HTTP client settings (prometheus/common `config.HTTPClientConfig`).

Scrape configs, remote_write entries and some discovery configs carry these fields inline, so they are a
dataclass mixin (`HTTPClientFields`) rather than a nested block. Validation follows
`HTTPClientConfig.Validate`.
Unlike Prometheus, `bearer_token`/`bearer_token_file` are kept as written instead of being rewritten into
`authorization`, so the config shown back and the errors name the fields the user wrote;
`effective_authorization()` gives the resolved view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from service.config.errors import ConfigError
from service.config.schema import Secret

TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PORT = re.compile(r"^[0-9]*$")
_EMPTY_SECRET = Secret("")


def check_url(text: str) -> None:
    """The few things Go's url.Parse rejects, with its wording."""
    if _CONTROL.search(text):
        raise ConfigError(f'parse "{text}": net/url: invalid control character in URL')
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ConfigError(f'parse "{text}": {exc}') from None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if " " in netloc:
        raise ConfigError(f'parse "{text}": invalid character " " in host name')
    if netloc and not netloc.endswith("]") and ":" in netloc:
        port = netloc.rsplit(":", 1)[1]
        if not _PORT.match(port):
            raise ConfigError(f'parse "{text}": invalid port ":{port}" after host')


@dataclass
class BasicAuth:
    __yaml_type__ = "config.BasicAuth"

    username: str = ""
    password: Secret = _EMPTY_SECRET
    password_file: str = ""
    username_file: str = ""  # prometheus/common 0.45+


@dataclass
class Authorization:
    __yaml_type__ = "config.Authorization"

    type: str = ""
    credentials: Secret = _EMPTY_SECRET
    credentials_file: str = ""


@dataclass
class TLSConfig:
    __yaml_type__ = "config.plain"

    ca: str = ""
    ca_file: str = ""
    cert: str = ""
    cert_file: str = ""
    key: Secret = _EMPTY_SECRET
    key_file: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False
    min_version: str = ""
    max_version: str = ""

    def check(self) -> None:
        for version in (self.min_version, self.max_version):
            if version and version not in TLS_VERSIONS:
                raise ConfigError(f"unknown TLS version: {version}")
        if self.ca and self.ca_file:
            raise ConfigError("at most one of ca and ca_file must be configured")
        if self.cert and self.cert_file:
            raise ConfigError("at most one of cert and cert_file must be configured")
        if self.key and self.key_file:
            raise ConfigError("at most one of key and key_file must be configured")
        has_cert = bool(self.cert or self.cert_file)
        has_key = bool(self.key or self.key_file)
        if has_cert and not has_key:
            raise ConfigError("exactly one of key or key_file must be configured when a client certificate "
                              "is configured")
        if has_key and not has_cert:
            raise ConfigError("exactly one of cert or cert_file must be configured when a client key is "
                              "configured")

    def files(self) -> list[tuple[str, str]]:
        """(field, path) of every file this block would read, in the agent's checking order."""
        return [(n, v) for n, v in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                                    ("key_file", self.key_file)) if v]


@dataclass
class OAuth2:
    __yaml_type__ = "config.OAuth2"

    client_id: str = ""
    client_secret: Secret = _EMPTY_SECRET
    client_secret_file: str = ""
    scopes: list[str] = field(default_factory=list)
    token_url: str = ""
    endpoint_params: dict[str, str] = field(default_factory=dict)
    tls_config: TLSConfig = field(default_factory=TLSConfig)
    proxy_url: str = ""
    # prometheus/common 0.4x: the rest of the proxy settings inline; accepted, ignored (docs/configuration.md)
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, list[Secret]] = field(default_factory=dict)

    def check(self) -> None:
        if self.proxy_url:
            check_url(self.proxy_url)


@dataclass
class HTTPClientFields:
    """The inline HTTP client block. Subclasses call `check_http_client()` from their own `check()`."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    oauth2: OAuth2 | None = None
    bearer_token: Secret = _EMPTY_SECRET
    bearer_token_file: str = ""
    tls_config: TLSConfig = field(default_factory=TLSConfig)
    proxy_url: str = ""
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, list[Secret]] = field(default_factory=dict)
    follow_redirects: bool = True
    enable_http2: bool = True
    # prometheus/common 0.55 (Prometheus 2.55): extra request headers; accepted, ignored (docs/configuration.md)
    http_headers: dict[str, Any] = field(default_factory=dict)

    def check_http_client(self) -> None:
        """prometheus/common HTTPClientConfig.Validate, same checks, same order, same words."""
        has_bearer = bool(self.bearer_token or self.bearer_token_file)
        if self.bearer_token and self.bearer_token_file:
            raise ConfigError("at most one of bearer_token & bearer_token_file must be configured")
        if (self.basic_auth is not None or self.oauth2 is not None) and has_bearer:
            raise ConfigError("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be "
                              "configured")
        if self.basic_auth is not None and self.basic_auth.password and self.basic_auth.password_file:
            raise ConfigError("at most one of basic_auth password & password_file must be configured")
        if self.basic_auth is not None and self.basic_auth.username and self.basic_auth.username_file:
            raise ConfigError("at most one of basic_auth username & username_file must be configured")
        auth = self.authorization
        if auth is not None:
            if has_bearer:
                raise ConfigError("authorization is not compatible with bearer_token & bearer_token_file")
            if auth.credentials and auth.credentials_file:
                raise ConfigError("at most one of authorization credentials & credentials_file must be "
                                  "configured")
            auth.type = auth.type.strip() or "Bearer"
            if auth.type.lower() == "basic":
                raise ConfigError('authorization type cannot be set to "basic", use "basic_auth" instead')
            if self.basic_auth is not None or self.oauth2 is not None:
                raise ConfigError("at most one of basic_auth, oauth2 & authorization must be configured")
        if self.oauth2 is not None:
            oauth = self.oauth2
            if self.basic_auth is not None:
                raise ConfigError("at most one of basic_auth, oauth2 & authorization must be configured")
            if not oauth.client_id:
                raise ConfigError("oauth2 client_id must be configured")
            if not oauth.client_secret and not oauth.client_secret_file:
                raise ConfigError("either oauth2 client_secret or client_secret_file must be configured")
            if not oauth.token_url:
                raise ConfigError("oauth2 token_url must be configured")
            if oauth.client_secret and oauth.client_secret_file:
                raise ConfigError("at most one of oauth2 client_secret & client_secret_file must be "
                                  "configured")
        if self.proxy_url:
            check_url(self.proxy_url)
        if self.proxy_connect_header and not self.proxy_from_environment and not self.proxy_url:
            raise ConfigError("if proxy_connect_header is configured, proxy_url or proxy_from_environment "
                              "must also be configured")
        if self.proxy_from_environment and self.proxy_url:
            raise ConfigError("if proxy_from_environment is configured, proxy_url must not be configured")
        if self.proxy_from_environment and self.no_proxy:
            raise ConfigError("if proxy_from_environment is configured, no_proxy must not be configured")
        if self.no_proxy and not self.proxy_url:
            raise ConfigError("if no_proxy is configured, proxy_url must also be configured")

    def effective_authorization(self) -> Authorization | None:
        """The Authorization header settings, with the legacy bearer_token fields folded in."""
        if self.authorization is not None:
            return self.authorization
        if self.bearer_token:
            return Authorization(type="Bearer", credentials=self.bearer_token)
        if self.bearer_token_file:
            return Authorization(type="Bearer", credentials_file=self.bearer_token_file)
        return None

    def files_read(self) -> list[tuple[str, str]]:
        """(field, path) of every file the client would read: the agent's six checks in its order, then
        the OAuth2 ones it does not check."""
        out: list[tuple[str, str]] = []
        if self.bearer_token_file:
            out.append(("bearer_token_file", self.bearer_token_file))
        if self.basic_auth is not None and self.basic_auth.password_file:
            out.append(("password_file", self.basic_auth.password_file))
        if self.basic_auth is not None and self.basic_auth.username_file:
            out.append(("username_file", self.basic_auth.username_file))
        if self.authorization is not None and self.authorization.credentials_file:
            out.append(("credentials_file", self.authorization.credentials_file))
        out.extend(self.tls_config.files())
        if self.oauth2 is not None:
            if self.oauth2.client_secret_file:
                out.append(("oauth2.client_secret_file", self.oauth2.client_secret_file))
            out.extend((f"oauth2.tls_config.{n}", v) for n, v in self.oauth2.tls_config.files())
        return out
