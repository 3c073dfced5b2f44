"""The shared HTTPClient setup as the remote_write client uses it: auth, headers and TLS reach a real server."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from pathlib import Path

import pytest

from service.metrics.remote.client import NonRecoverableError, RecoverableError, WriteClient
from tests.helpers.remote_helpers import CapturePeer, Reply, request_body, rw_config

BODY = request_body(2, 1_700_000_000_000)


def _store(cfg_extra: str, peer: CapturePeer, scheme: str = "http") -> dict[str, str]:
    async def go() -> dict[str, str]:
        await peer.start()
        client = WriteClient(rw_config(f"{scheme}://localhost:{peer.port}/api/v1/write", cfg_extra))
        try:
            await client.store(BODY)
        finally:
            await client.close()
            await peer.stop()
        return peer.headers[-1]
    return asyncio.run(go())


def test_basic_auth_and_custom_headers(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    headers = _store(f"basic_auth: {{username: alice, password_file: {pw}}}\nheaders: {{X-Scope-OrgID: t1}}\n",
                     CapturePeer())
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert headers["X-Scope-OrgID"] == "t1"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"


def test_bearer_token() -> None:
    headers = _store("bearer_token: tok123\n", CapturePeer())
    assert headers["Authorization"] == "Bearer tok123"


def test_status_classification() -> None:
    async def go() -> None:
        for status, exc in ((500, RecoverableError), (400, NonRecoverableError), (413, NonRecoverableError)):
            peer = await CapturePeer(lambda n, s=status: Reply(s)).start()
            client = WriteClient(rw_config(peer.url))
            with pytest.raises(exc):
                await client.store(BODY)
            await client.close()
            await peer.stop()
    asyncio.run(go())


def _make_certs(d: Path) -> tuple[Path, Path, Path]:
    ca_key, ca_crt, key, csr, crt, ext = (d / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt",
                                                          "ext.cnf"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
        "-days", "1", "-subj", "/CN=test-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=localhost")
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(crt), "-days", "1", "-extfile", str(ext))
    return ca_crt, crt, key


def test_tls_with_ca_file(tmp_path: Path) -> None:
    ca, crt, key = _make_certs(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    peer = CapturePeer(ssl_context=ctx)
    headers = _store(f"tls_config: {{ca_file: {ca}}}\nbearer_token: t\n", peer, scheme="https")
    assert headers["Authorization"] == "Bearer t" and peer.samples() == 2

    peer2 = CapturePeer(ssl_context=ctx)
    with pytest.raises(RecoverableError, match=r"(?i)certificate"):  # not trusted without the CA
        _store("", peer2, scheme="https")
