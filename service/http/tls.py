"""TLS for the node's HTTP server (`server.http_tls_config`, Prometheus web-config field names)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from service.config.errors import ConfigError

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


@dataclass
class ServerTLSConfig:
    __yaml_type__ = "server.TLSConfig"

    cert_file: str = ""
    key_file: str = ""
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""
    min_version: str = "TLS12"
    max_version: str = ""
    cipher_suites: list[str] = field(default_factory=list)
    curve_preferences: list[str] = field(default_factory=list)
    prefer_server_cipher_suites: bool = True

    def check(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("http_tls_config needs both cert_file and key_file")
        if self.client_auth_type not in CLIENT_AUTH:
            raise ConfigError(f"invalid client_auth_type {self.client_auth_type!r}: one of {', '.join(CLIENT_AUTH)}")
        if self.client_auth_type != "NoClientCert" and not self.client_ca_file and "Verify" in self.client_auth_type:
            raise ConfigError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        for version in (self.min_version, self.max_version):
            if version and version not in VERSIONS:
                raise ConfigError(f"unknown TLS version: {version}")

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn.Config keyword arguments serving this TLS (none when off)."""
        if not self.enabled:
            return {}
        return {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file,
                "ssl_ca_certs": self.client_ca_file or None, "ssl_cert_reqs": CLIENT_AUTH[self.client_auth_type]}

    def load(self, config: uvicorn.Config) -> None:
        """Load the certificates into `config` now (OSError or ssl.SSLError when they cannot be read), so a
        bad file fails at start, then apply the protocol versions."""
        if not self.enabled:
            return
        config.load()
        assert config.ssl is not None
        self.tune(config.ssl)

    def tune(self, ctx: ssl.SSLContext) -> None:
        """Apply what uvicorn's own options do not cover (protocol versions)."""
        ctx.minimum_version = VERSIONS[self.min_version or "TLS12"]
        if self.max_version:
            ctx.maximum_version = VERSIONS[self.max_version]
