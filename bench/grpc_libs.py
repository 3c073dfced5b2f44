"""Which gRPC server library for ``logproto.Pusher/Push``: grpcio (``grpc.aio``) or grpclib.

Each server runs in its own process on uvloop (as the node runs) with the same handler: parse the
1000-line PushRequest with upb and answer an empty PushResponse, so the figures compare the libraries'
own cost per call. One grpc.aio client process drives both in turn with the same load (8 concurrent
unary calls on one channel). Prints requests/s and the server process's CPU milliseconds per request.

    python bench/grpc_libs.py [seconds]

grpclib is not a project dependency: ``pip install grpclib`` into the venv to run this.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.proto.push_pb2 import PushRequest
from tests.helpers.ports import free_port

LINES, CONCURRENCY = 1000, 8
METHOD = "/logproto.Pusher/Push"
LINE = "level=info ts=2026-01-01T00:00:00Z caller=bench.go:42 msg=\"request served\" status=200 path=/api/v1/x"


def request_bytes() -> bytes:
    req = PushRequest()
    s = req.streams.add()
    s.labels = '{app="bench", host="h1"}'
    for i in range(LINES):
        e = s.entries.add()
        e.timestamp.seconds, e.timestamp.nanos = 1_700_000_000, i
        e.line = f"{LINE} n={i:06d}"
    return req.SerializeToString()


def _handle(raw: bytes) -> bytes:
    PushRequest.FromString(raw)
    return b""


async def _serve_grpcio(port: int) -> None:
    import grpc

    async def push(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return _handle(raw)

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 100 << 20)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "logproto.Pusher", {"Push": grpc.unary_unary_rpc_method_handler(push)})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)


class _RawCodec:
    """grpclib codec passing message bytes through, as the grpcio handler above receives them."""

    __content_subtype__ = "proto"

    def encode(self, message: bytes, message_type: object) -> bytes:
        return message

    def decode(self, data: bytes, message_type: object) -> bytes:
        return data


async def _serve_grpclib(port: int) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    class Pusher:
        async def push(self, stream: Stream) -> None:
            raw = await stream.recv_message()
            await stream.send_message(_handle(raw))

        def __mapping__(self) -> dict[str, Handler]:
            return {METHOD: Handler(self.push, Cardinality.UNARY_UNARY, bytes, bytes)}

    server = Server([Pusher()], codec=_RawCodec())  # type: ignore[arg-type]
    await server.start("127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(port: int, body: bytes, seconds: float) -> int:
    import grpc

    done = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                         options=[("grpc.max_send_message_length", 100 << 20)]) as ch:
        call = ch.unary_unary(METHOD)
        await call(body)  # warm the connection
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                await call(body)
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


def bench(lib: str, seconds: float, body: bytes) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "serve", lib, str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        n = asyncio.run(_drive(port, body, seconds))
        cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    return n / wall, cpu / n * 1000


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        import uvloop

        serve = _serve_grpcio if sys.argv[2] == "grpcio" else _serve_grpclib
        uvloop.run(serve(int(sys.argv[3])))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    body = request_bytes()
    print(f"unary Push of {LINES} lines ({len(body)} bytes), {CONCURRENCY} concurrent calls, {seconds:g}s each")
    for lib in ("grpcio", "grpclib", "grpcio", "grpclib"):  # twice, interleaved: the machine is shared
        rps, cpu_ms = bench(lib, seconds, body)
        print(f"{lib:8s} {rps:8.0f} req/s  {cpu_ms:6.3f} server CPU ms/req  {rps * LINES:9.0f} entries/s")


if __name__ == "__main__":
    main()
