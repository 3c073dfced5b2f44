"""Keeping secrets out of everything the node shows: API output, `/-/config`, logs and metric labels.

Typed secrets are `Secret` fields (see schema.py). Two kinds are not typed and are handled here:
- passwords inside URLs (`https://user:pass@host/`), redacted as Prometheus' `config.URL.Redacted()` does:
  the password becomes `xxxxx`, the user name stays;
- blocks we keep as untyped data (sigv4, azuread, discovery configs, integrations), masked by key name.
"""

from __future__ import annotations

import re
from typing import Any

SECRET_MASK = "<secret>"
URL_PASSWORD_MASK = "xxxxx"

# Keys holding secrets in the Prometheus, Loki and integration configs we do not type.
SECRET_KEYS = frozenset({
    "password", "secret_key", "client_secret", "credentials", "bearer_token", "key", "token",
    "auth_token", "application_credential_secret", "consumer_secret", "secret", "access_token",
    "refresh_token", "session_token", "api_key", "private_key", "sas_token", "secret_access_key",
    "acl_token", "proxy_connect_header",
})

# scheme://user:password@ — the password runs to the authority's last `@` (as Go's url.Parse reads it);
# the authority ends at `/`, `?`, `#`, whitespace or a quote (the end of a value in a log line).
_URL_USERINFO = re.compile(
    r"""(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/?#@\s:"'<>]*:)[^/?#\s"'<>]*@""")


def redact_url(text: str) -> str:
    """`text` with the password of every URL's userinfo replaced by `xxxxx` (a URL without one is kept)."""
    if "@" not in text or "://" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: f"{m.group('head')}{URL_PASSWORD_MASK}@", text)


def url_host(url: str) -> str:
    """The `host[:port]` of a URL, never its userinfo (Go's `URL.Host`)."""
    netloc = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return netloc.rpartition("@")[2]


def mask_secret_keys(value: Any) -> Any:
    """Untyped data with the values of secret-looking keys masked and URL passwords redacted."""
    if isinstance(value, list):
        return [mask_secret_keys(v) for v in value]
    if isinstance(value, dict):
        return {k: SECRET_MASK if k in SECRET_KEYS and v not in (None, "") else mask_secret_keys(v)
                for k, v in value.items()}
    if isinstance(value, str):
        return redact_url(value)
    return value
