"""A Loki gRPC push client in its own process, on code generated from tests/data/loki_push.proto at test time.

Its own process because the generated module defines ``logproto.PushRequest`` again, which the test process
(holding the project's push_pb2 in the default descriptor pool) cannot load. ``GrpcPushClient`` drives it
over JSON lines: ``push`` (messages built with the generated classes), ``raw`` (bytes sent as they are, for
malformed input) and ``flood`` (concurrent pushes until one fails, each acknowledgement reported as it comes).

    python -m tests.helpers.grpc_push_client <generated dir> <host:port> [<ca file>]
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"
REPO = Path(__file__).resolve().parents[2]
METHOD = "/logproto.Pusher/Push"


def generate(out_dir: Path) -> Path:
    """Generate the client (loki_push_pb2, loki_push_pb2_grpc) into ``out_dir`` with grpcio-tools."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{DATA}", f"-I{wkt}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                      "loki_push.proto"])
    assert rc == 0, f"protoc failed with {rc}"
    return out_dir


class GrpcPushClient:
    """The test side: ``with GrpcPushClient(gen_dir, "127.0.0.1:port") as c: c.push([...])``."""

    def __init__(self, gen_dir: Path, target: str, ca: Path | None = None) -> None:
        args = [sys.executable, "-m", "tests.helpers.grpc_push_client", str(gen_dir), target,
                *([str(ca)] if ca else [])]
        self.proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self) -> GrpcPushClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the gRPC client process exited with {self.proc.poll()}"
        return json.loads(line)

    def push(self, streams: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """streams: [{"labels": '{a="1"}', "entries": [[ts_ns, line, {meta}?], ...]}] -> the call's outcome
        ({"code", "details", "trailers", "retry_delay"})."""
        self._send({"op": "push", "streams": streams, "metadata": metadata or {}})
        return self._read()

    def raw(self, data: bytes, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        self._send({"op": "raw", "hex": data.hex(), "metadata": metadata or {}})
        return self._read()

    def flood(self, prefix: str, lines: int, concurrency: int,
              metadata: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Pushes of ``lines`` entries ("<prefix>-<batch>-<i>") until one fails: yields {"ack": batch} per
        acknowledged push as it comes, then {"end": code}."""
        self._send({"op": "flood", "prefix": prefix, "lines": lines, "concurrency": concurrency,
                    "metadata": metadata or {}})
        while True:
            out = self._read()
            yield out
            if "end" in out:
                return


# --- the client process -------------------------------------------------------------------------------------


def _outcome(pb: Any, err: Exception | None) -> dict[str, Any]:
    import grpc

    if err is None:
        return {"code": "OK", "details": "", "trailers": {}, "retry_delay": None}
    assert isinstance(err, grpc.RpcError) and isinstance(err, grpc.Call), err
    trailers: dict[str, str] = {}
    retry_delay = None
    for key, value in err.trailing_metadata() or ():
        if key.endswith("-bin"):
            trailers[key] = value.hex()
            if key == "grpc-status-details-bin":
                status = pb.RpcStatus.FromString(value)
                for detail in status.details:
                    if detail.type_url.endswith("/google.rpc.RetryInfo"):
                        retry_delay = pb.RetryInfo.FromString(detail.value).retry_delay.seconds
        else:
            trailers[key] = value
    return {"code": err.code().name, "details": err.details(), "trailers": trailers, "retry_delay": retry_delay}


def _request(pb: Any, streams: list[dict[str, Any]]) -> Any:
    req = pb.PushRequest()
    for s in streams:
        stream = req.streams.add(labels=s["labels"])
        for ts, line, *meta in s["entries"]:
            e = stream.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 10**9)
            for name, value in (meta[0] if meta else {}).items():
                e.structuredMetadata.add(name=name, value=value)
    return req


def _main(gen_dir: str, target: str, ca: str | None) -> None:
    import time

    import grpc

    sys.path.insert(0, gen_dir)
    pb = importlib.import_module("loki_push_pb2")
    pb_grpc = importlib.import_module("loki_push_pb2_grpc")
    options = [("grpc.max_send_message_length", 64 << 20)]
    if ca:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
        channel = grpc.secure_channel(target, creds, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    stub = pb_grpc.PusherStub(channel)
    raw_call = channel.unary_unary(METHOD)  # bytes in, bytes out: for messages the classes cannot build
    out_lock = threading.Lock()

    def emit(obj: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def call(fn: Any, request: Any, metadata: dict[str, str]) -> dict[str, Any]:
        try:
            fn(request, metadata=tuple(metadata.items()), timeout=20)
        except grpc.RpcError as exc:
            return _outcome(pb, exc)
        return _outcome(pb, None)

    def flood(cmd: dict[str, Any]) -> None:
        failed = threading.Event()
        first_error: list[str] = []
        counter = iter(range(1 << 30))
        counter_lock = threading.Lock()

        def worker() -> None:
            while not failed.is_set():
                with counter_lock:
                    batch = next(counter)
                ts = time.time_ns()
                entries = [[ts + i, f"{cmd['prefix']}-{batch}-{i}"] for i in range(cmd["lines"])]
                result = call(stub.Push, _request(pb, [{"labels": '{job="flood"}', "entries": entries}]),
                              cmd["metadata"])
                if result["code"] != "OK":
                    first_error.append(result["code"])
                    failed.set()
                    return
                emit({"ack": batch})

        with ThreadPoolExecutor(cmd["concurrency"]) as pool:
            for _ in range(cmd["concurrency"]):
                pool.submit(worker)
        emit({"end": first_error[0] if first_error else "OK"})

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "push":
            emit(call(stub.Push, _request(pb, cmd["streams"]), cmd["metadata"]))
        elif cmd["op"] == "raw":
            emit(call(raw_call, bytes.fromhex(cmd["hex"]), cmd["metadata"]))
        elif cmd["op"] == "flood":
            flood(cmd)
    channel.close()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
