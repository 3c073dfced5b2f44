"""Loki push benchmark: 1000-line protobuf and JSON pushes from 16 connections into a node (WAL, fsync'd
acknowledgements) and out to a counting Loki stand-in. Prints entries/s and MiB/s (line bytes) for the
acknowledged ingest and for end-to-end delivery, and per CPU second of the node process and its child
processes (ingest, forwarding and, with ``--search``, the search store's writer process: the per-core
figure, steady on a busy machine), per scenario. Every line names the mode it was measured in (search store
on or off) and how the CPU seconds split between the node and its children:

- ``proto``: protobuf, incoming labels and timestamps kept (the received body is stored as it came);
- ``proto-stamp``: protobuf on a push target that re-stamps timestamps (``use_incoming_timestamp: false``);
- ``proto-rules``: re-stamped, plus a static label and a relabel rule that adds a label;
- ``proto-rules-meta``: the same with two structured-metadata pairs per entry;
- ``json`` / ``json-meta``: JSON (without / with structured metadata), incoming timestamps kept;
- ``json-stamp`` / ``json-rules``: JSON on the re-stamping / re-stamping-with-rules targets;
- ``grpc``, ``grpc-stamp``, ``grpc-rules``, ``grpc-rules-meta``: the protobuf scenarios' requests as gRPC
  ``logproto.Pusher/Push`` calls (uncompressed, as gRPC sends them) on the same targets' gRPC ports,
  16 concurrent calls on one HTTP/2 connection.

The local search store is off unless ``--search`` is given (it costs more than the push path itself).

    python bench/logs_push.py [seconds] [--search] [scenario ...]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
import snappy

from service.proto.push_pb2 import PushRequest
from tests.helpers.node_process import NodeProcess, free_port, wait_for

LINES, CONNS = 1000, 16
LINE = "level=info ts=2026-01-01T00:00:00Z caller=bench.go:42 msg=\"request served\" status=200 path=/api/v1/x"
META = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "pod": "api-7d9f8b-x2k4q"}
PROTO, JSON, GRPC = "application/x-protobuf", "application/json", "grpc"


def _capture(port: int, counter: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    from aiohttp import web

    async def push(request: web.Request) -> web.Response:
        req = PushRequest.FromString(snappy.uncompress(await request.read()))
        n = sum(len(s.entries) for s in req.streams)
        with counter.get_lock():
            counter.value += n
        return web.Response(status=204)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/loki/api/v1/push", push)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def bodies(meta: bool) -> tuple[bytes, bytes, int]:
    """(protobuf body, JSON body, line bytes) of one push."""
    req = PushRequest()
    s = req.streams.add()
    s.labels = '{app="bench", host="h1"}'
    values = []
    for i in range(LINES):
        e = s.entries.add()
        e.timestamp.seconds, e.timestamp.nanos = 1_700_000_000, i
        e.line = f"{LINE} n={i:06d}"
        if meta:
            for k, v in META.items():
                e.structuredMetadata.add(name=k, value=v)
        values.append([str(1_700_000_000 * 10**9 + i), e.line, *([META] if meta else [])])
    proto = snappy.compress(req.SerializeToString())
    js = orjson.dumps({"streams": [{"stream": {"app": "bench", "host": "h1"}, "values": values}]})
    return proto, js, sum(len(v[1]) for v in values)


async def drive(port: int, body: bytes, ctype: str, seconds: float) -> int:
    sent = 0
    stop = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=CONNS)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker() -> None:
            nonlocal sent
            while time.monotonic() < stop:
                async with session.post(f"http://127.0.0.1:{port}/loki/api/v1/push", data=body,
                                        headers={"Content-Type": ctype}) as r:
                    await r.read()
                    if r.status == 204:
                        sent += 1
                    else:
                        await asyncio.sleep(0.05)
        await asyncio.gather(*(worker() for _ in range(CONNS)))
    return sent


async def drive_grpc(port: int, body: bytes, seconds: float) -> int:
    """Unary Push calls of ``body`` (a serialized PushRequest) from CONNS concurrent callers."""
    import grpc

    sent = 0
    stop = time.monotonic() + seconds
    options = [("grpc.max_send_message_length", 100 << 20)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        push = channel.unary_unary("/logproto.Pusher/Push")

        async def worker() -> None:
            nonlocal sent
            while time.monotonic() < stop:
                try:
                    await push(body)
                    sent += 1
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
        await asyncio.gather(*(worker() for _ in range(CONNS)))
    return sent


def config(tmp: str, cap_port: int, ports: dict[str, int], search: bool) -> str:
    return f"""
metrics: {{wal_directory: {tmp}/wal}}
logs:
  positions_directory: {tmp}/pos
  configs:
  - name: default
    clients: [{{url: "http://127.0.0.1:{cap_port}/loki/api/v1/push", batchwait: 100ms, batchsize: 4194304}}]
    search: {{enabled: {str(search).lower()}}}
    scrape_configs:
    - job_name: keep
      loki_push_api:
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {free_port()}, grpc_listen_port: {ports["grpc"]},
                  grpc_server_max_recv_msg_size: 104857600}}
        use_incoming_timestamp: true
    - job_name: stamp
      loki_push_api:
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {ports["stamp"]},
                  grpc_listen_port: {ports["grpc-stamp"]}, grpc_server_max_recv_msg_size: 104857600}}
    - job_name: rules
      loki_push_api:
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {ports["rules"]},
                  grpc_listen_port: {ports["grpc-rules"]}, grpc_server_max_recv_msg_size: 104857600}}
        labels: {{source: bench}}
      relabel_configs:
      - {{source_labels: [host], target_label: node, regex: "h(.*)", replacement: "node-$1"}}
"""


def main() -> None:
    args = sys.argv[1:]
    seconds = float(args.pop(0)) if args and args[0][0].isdigit() else 5.0
    search = "--search" in args
    args = [a for a in args if a != "--search"]
    proto, js, line_bytes = bodies(False)
    proto_m, js_m, _ = bodies(True)
    cap_port = free_port()
    ports = {name: free_port() for name in ("stamp", "rules", "grpc", "grpc-stamp", "grpc-rules")}
    stamp_port, rules_port = ports["stamp"], ports["rules"]
    grpc_body, grpc_body_m = snappy.uncompress(proto), snappy.uncompress(proto_m)
    scenarios = {  # name: (body, content type, port)
        "proto": (proto, PROTO, 0), "proto-stamp": (proto, PROTO, stamp_port),
        "proto-rules": (proto, PROTO, rules_port), "proto-rules-meta": (proto_m, PROTO, rules_port),
        "json": (js, JSON, 0), "json-meta": (js_m, JSON, 0), "json-stamp": (js, JSON, stamp_port),
        "json-rules": (js, JSON, rules_port),
        "grpc": (grpc_body, GRPC, ports["grpc"]), "grpc-stamp": (grpc_body, GRPC, ports["grpc-stamp"]),
        "grpc-rules": (grpc_body, GRPC, ports["grpc-rules"]),
        "grpc-rules-meta": (grpc_body_m, GRPC, ports["grpc-rules"]),
    }
    chosen = args or list(scenarios)
    counter = multiprocessing.Value("q", 0)
    cap = multiprocessing.Process(target=_capture, args=(cap_port, counter), daemon=True)
    cap.start()
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node", config(tmp, cap_port, ports, search)).start()
        try:
            wait_for(lambda: all(_up(p) for p in ports.values()), 10, what="push targets")
            mode = "on" if search else "off"
            print(f"{LINES}-line pushes, {CONNS} connections, {seconds:.0f}s each, line bytes/push "
                  f"{line_bytes}, search store {mode}, node pid {node.pid}")
            for name in chosen:
                body, ctype, port = scenarios[name]
                port = port or node.port
                before = counter.value
                own0, kids0 = _cpu_seconds(node.pid)
                t0 = time.monotonic()
                if ctype == GRPC:
                    pushes = asyncio.run(drive_grpc(port, body, seconds))
                else:
                    pushes = asyncio.run(drive(port, body, ctype, seconds))
                t_ack = time.monotonic() - t0
                want = before + pushes * LINES
                wait_for(lambda w=want: counter.value >= w, 120, what="delivery")
                t_all = time.monotonic() - t0
                own1, kids1 = _cpu_seconds(node.pid)
                own, kids = own1 - own0, kids1 - kids0
                cpu = own + kids
                n = pushes * LINES
                mib = pushes * line_bytes / (1 << 20)
                print(f"{name:16s} [search {mode}] ingest (acked, durable): {n / t_ack:9.0f} entries/s "
                      f"{mib / t_ack:6.1f} MiB/s | end to end: {n / t_all:9.0f} entries/s {mib / t_all:6.1f} MiB/s"
                      f" | per CPU second (node {own:.1f} s + children {kids:.1f} s): {n / cpu:9.0f} entries "
                      f"{mib / cpu:6.1f} MiB", flush=True)
        finally:
            node.stop()
            cap.terminate()
            cap.join(5)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own user + system CPU seconds, its descendants'), Linux. Descendants are the live
    processes under it (e.g. the search store's writer) plus the children it has reaped (cutime + cstime),
    so a child that exits between two readings still counts. CPU time, not wall time, so results hold on
    a shared, busy machine."""
    tick = os.sysconf("SC_CLK_TCK")
    own = _stat(pid)
    if own is None:
        raise RuntimeError(f"process {pid} is gone")
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
            stats[int(entry)] = fields
    live = 0
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                live += int(stats[child][11]) + int(stats[child][12])
                frontier.append(child)
    reaped = int(own[13]) + int(own[14])
    return (int(own[11]) + int(own[12])) / tick, (live + reaped) / tick


def _up(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
