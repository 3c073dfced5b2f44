"""Discovery against real parts: a file changed on disk, a loopback http_sd server, a loopback DNS server."""

from __future__ import annotations

import asyncio
import os
import struct

import orjson
from aiohttp import web

from service.metrics.config.discovery import DNSSDConfig, FileSDConfig, HTTPSDConfig
from service.metrics.discovery.base import Provider
from service.metrics.discovery.dns import DNSProvider
from service.metrics.discovery.file import FileProvider
from service.metrics.discovery.http import HTTPProvider
from tests.helpers.polling import wait_until


def addresses(p: Provider) -> list[str]:
    return sorted(t["__address__"] for g in p.groups.values() for t in g.targets)


def test_file_sd_follows_changes(tmp_path) -> None:
    path = tmp_path / "targets.json"
    path.write_bytes(orjson.dumps([{"targets": ["a:1", "b:2"], "labels": {"env": "x"}}]))

    async def scenario() -> None:
        changes = []
        p = FileProvider(FileSDConfig(files=[str(tmp_path / "*.json")]), poll_interval=0.02)
        p.start(lambda: changes.append(1))
        try:
            await wait_until(lambda: addresses(p) == ["a:1", "b:2"])
            group = p.groups[f"{path}:0"]
            assert group.labels == {"env": "x", "__meta_filepath": str(path)}
            (tmp_path / "more.json").write_text("[]")
            path.write_bytes(orjson.dumps([{"targets": ["c:3"]}]) + b" ")  # size changes too
            await wait_until(lambda: addresses(p) == ["c:3"])
            path.write_text("{not json")  # a broken file keeps its previous groups
            await asyncio.sleep(0.1)
            assert addresses(p) == ["c:3"]
            os.unlink(path)
            await wait_until(lambda: addresses(p) == [])
            assert len(changes) >= 3
        finally:
            await p.stop()
    asyncio.run(scenario())


def test_file_sd_yaml(tmp_path) -> None:
    (tmp_path / "t.yml").write_text("- targets: ['h:9']\n  labels: {team: a}\n")
    p = FileProvider(FileSDConfig(files=[str(tmp_path / "t.yml")]))
    p.refresh(force=True)
    assert addresses(p) == ["h:9"]


def test_http_sd_with_auth_and_failure() -> None:
    async def scenario() -> None:
        state = {"groups": [{"targets": ["x:1"], "labels": {"a": "b"}}], "status": 200}
        seen_auth = []

        async def sd(request: web.Request) -> web.Response:
            seen_auth.append(request.headers.get("Authorization"))
            return web.Response(body=orjson.dumps(state["groups"]), status=state["status"],
                                content_type="application/json")
        app = web.Application()
        app.router.add_get("/sd", sd)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        from service.config import schema
        cfg = schema.loads(HTTPSDConfig, f"url: http://127.0.0.1:{port}/sd\nrefresh_interval: 50ms\n"
                                         "authorization: {credentials: tok}\n")
        p = HTTPProvider(cfg)
        p.start(lambda: None)
        try:
            await wait_until(lambda: addresses(p) == ["x:1"])
            assert p.groups[f"http://127.0.0.1:{port}/sd:0"].labels == {"a": "b",
                                                                       "__meta_url": f"http://127.0.0.1:{port}/sd"}
            assert seen_auth[0] == "Bearer tok"
            state["status"] = 500
            await wait_until(lambda: "500" in p.last_error)
            assert addresses(p) == ["x:1"]  # kept on failure
            state.update(status=200, groups=[{"targets": ["y:2"]}])
            await wait_until(lambda: addresses(p) == ["y:2"])
        finally:
            await p.stop()
            await runner.cleanup()
    asyncio.run(scenario())


def _name(n: str) -> bytes:
    return b"".join(bytes((len(p),)) + p.encode() for p in n.split(".")) + b"\x00"


class _FakeDNS(asyncio.DatagramProtocol):
    """Answers from hand-written wire records (independent of the client's encoder)."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        qid = data[:2]
        question = data[12:]
        qtype = struct.unpack(">H", question[-4:-2])[0]
        answers = []
        if qtype == 1:
            answers = [b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, i]) for i in (1, 2)]
        elif qtype == 28:
            answers = [b"\xc0\x0c" + struct.pack(">HHIH", 28, 1, 60, 16) + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"]
        elif qtype == 33:
            target = _name("node1.example.org")
            answers = [b"\xc0\x0c" + struct.pack(">HHIH", 33, 1, 60, 6 + len(target))
                       + struct.pack(">HHH", 0, 5, 9100) + target]
        header = qid + b"\x81\x80" + struct.pack(">HHHH", 1, len(answers), 0, 0)
        self.transport.sendto(header + question + b"".join(answers), addr)


def test_dns_sd_a_aaaa_srv_against_loopback_server() -> None:
    async def scenario() -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            _FakeDNS, local_addr=("127.0.0.1", 0))
        server = transport.get_extra_info("sockname")
        try:
            a = DNSProvider(DNSSDConfig(names=["svc.example.org"], type="A", port=9100), [server])
            await a.refresh()
            assert addresses(a) == ["10.0.0.1:9100", "10.0.0.2:9100"]
            assert a.groups["svc.example.org"].targets[0]["__meta_dns_name"] == "svc.example.org"
            aaaa = DNSProvider(DNSSDConfig(names=["svc.example.org"], type="AAAA", port=80), [server])
            await aaaa.refresh()
            assert addresses(aaaa) == ["[2001:db8::1]:80"]
            srv = DNSProvider(DNSSDConfig(names=["_m._tcp.example.org"]), [server])
            await srv.refresh()
            assert addresses(srv) == ["node1.example.org:9100"]
            t = srv.groups["_m._tcp.example.org"].targets[0]
            assert t["__meta_dns_srv_record_target"] == "node1.example.org."
            assert t["__meta_dns_srv_record_port"] == "9100"
        finally:
            transport.close()
    asyncio.run(scenario())
