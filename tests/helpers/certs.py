"""Test certificates made with openssl: a CA, a server certificate for 127.0.0.1/localhost, a client one."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certs(directory: Path) -> dict[str, Path]:
    """ca.crt, server.crt/.key and client.crt/.key in `directory` (valid one day)."""
    directory.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=test-ca")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "extendedKeyUsage=serverAuth,clientAuth\n")
    for name in ("server", "client"):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", "san.ext")
    return {n: directory / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}
