"""dns_sd_configs: A, AAAA, SRV and MX lookups every refresh_interval with a small UDP DNS client
(nameservers from /etc/resolv.conf, as Prometheus' resolver reads them). A failed lookup keeps the name's
previous group. Labels: `__meta_dns_name`, `__meta_dns_srv_record_target`, `__meta_dns_srv_record_port`,
`__meta_dns_mx_record_target`."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import struct

from service.metrics.config.discovery import DNSSDConfig
from service.metrics.discovery.base import Provider, TargetGroup

QTYPES = {"A": 1, "AAAA": 28, "SRV": 33, "MX": 15}


class DNSError(Exception):
    pass


def resolv_conf_nameservers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append((parts[1], 53))
    except OSError:
        pass
    return out or [("127.0.0.1", 53)]


def build_query(name: str, qtype: int, qid: int) -> bytes:
    qname = b"".join(bytes((len(p),)) + p.encode("idna") for p in name.rstrip(".").split(".") if p) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels, jumped, end, hops = [], False, pos, 0
    while True:
        if pos >= len(msg) or hops > 64:
            raise DNSError("malformed name")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if not jumped:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            jumped, hops = True, hops + 1
            continue
        if length == 0:
            return ".".join(labels) + ".", (end if jumped else pos + 1)
        labels.append(msg[pos + 1:pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length


def parse_response(msg: bytes, qid: int, qtype: int) -> list[tuple]:
    """Answer records of `qtype`: A/AAAA -> (ip,), SRV -> (prio, weight, port, target), MX -> (pref, host)."""
    if len(msg) < 12:
        raise DNSError("short response")
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid:
        raise DNSError("response id mismatch")
    rcode = flags & 0xF
    if rcode == 3:
        return []  # NXDOMAIN: no targets
    if rcode:
        raise DNSError(f"server answered rcode {rcode}")
    pos = 12
    for _ in range(qd):
        _, pos = _read_name(msg, pos)
        pos += 4
    out: list[tuple] = []
    for _ in range(an):
        _, pos = _read_name(msg, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[pos:pos + 10])
        pos += 10
        rdata = msg[pos:pos + rdlen]
        if rtype == qtype == 1 and rdlen == 4:
            out.append((str(ipaddress.IPv4Address(rdata)),))
        elif rtype == qtype == 28 and rdlen == 16:
            out.append((str(ipaddress.IPv6Address(rdata)),))
        elif rtype == qtype == 33:
            prio, weight, port = struct.unpack(">HHH", rdata[:6])
            out.append((prio, weight, port, _read_name(msg, pos + 6)[0]))
        elif rtype == qtype == 15:
            out.append((struct.unpack(">H", rdata[:2])[0], _read_name(msg, pos + 2)[0]))
        pos += rdlen
    return out


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def query(name: str, qtype: int, nameservers: list[tuple[str, int]], timeout: float = 2.0) -> list[tuple]:
    last: Exception = DNSError("no nameservers")
    for server in nameservers:
        qid = random.randrange(1 << 16)
        transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(_Once, remote_addr=server)
        try:
            transport.sendto(build_query(name, qtype, qid))
            async with asyncio.timeout(timeout):
                return parse_response(await proto.answer, qid, qtype)
        except (TimeoutError, DNSError, OSError) as exc:
            last = exc
        finally:
            transport.close()
    raise DNSError(f"could not resolve {name!r}: {last}")


def records_to_targets(name: str, kind: str, port: int, records: list[tuple]) -> list[dict[str, str]]:
    out = []
    for rec in records:
        labels = {"__meta_dns_name": name, "__meta_dns_srv_record_target": "", "__meta_dns_srv_record_port": "",
                  "__meta_dns_mx_record_target": ""}
        if kind == "A":
            labels["__address__"] = f"{rec[0]}:{port}"
        elif kind == "AAAA":
            labels["__address__"] = f"[{rec[0]}]:{port}"
        elif kind == "SRV":
            host = rec[3].rstrip(".")
            labels.update(__address__=f"{host}:{rec[2]}", __meta_dns_srv_record_target=rec[3],
                          __meta_dns_srv_record_port=str(rec[2]))
        else:
            labels.update(__address__=f"{rec[1].rstrip('.')}:{port}", __meta_dns_mx_record_target=rec[1])
        out.append(labels)
    return out


class DNSProvider(Provider):
    kind = "dns"

    def __init__(self, config: DNSSDConfig, nameservers: list[tuple[str, int]] | None = None) -> None:
        super().__init__()
        self.config = config
        self.nameservers = nameservers or resolv_conf_nameservers()

    async def refresh(self) -> None:
        kind = self.config.type.upper()
        groups = dict(self.groups)
        for name in self.config.names:
            try:
                records = await query(name, QTYPES[kind], self.nameservers)
            except DNSError as exc:
                self.log.error("error refreshing DNS targets", name=name, err=str(exc))
                continue
            groups[name] = TargetGroup(name, records_to_targets(name, kind, self.config.port, records), {})
        self.publish(groups)

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(float(self.config.refresh_interval))
