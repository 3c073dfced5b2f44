"""Config PUT validation in a child process, with a CPU budget, off the event loop.

Why a process: parsing and validating a 4 MiB YAML body costs seconds of CPU in Python. On the event loop it
froze `/write`, `/-/healthy` and the membership heartbeat (the node's lease expired and it left the ring). A
thread would free the loop but not the GIL's other half, and cannot be stopped. A child process runs beside the
loop on another core and can be bounded:

- CPU budget (`config_validation_cpu_budget`): the child arms ITIMER_PROF for each body; past the budget the
  body is refused with 400 "config too costly to validate" (a property of the body: retrying will not help).
- Wall-clock cap (3 x budget + 10 s): if the child has not answered by then (an overloaded machine, or a stuck
  C call), it is killed and restarted, and the request gets 503 + Retry-After: a capacity problem.
- Queue: at most `MAX_WAITING` requests wait for the child; more get 503 + Retry-After.

Frames on the child's stdin/stdout: 8-byte big-endian length, then a pickle. Only this module's own child
reads and writes them.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any

from service.config.yamlnodes import prefer_libyaml
from service.configapi.validation import Rejected, Validated, validate_put
from service.log import get_logger
from service.metrics.config import GlobalConfig

DEFAULT_CPU_BUDGET = 30.0
MAX_WAITING = 8
RETRY_AFTER = 2
_HEADER = 8
_log = get_logger("configapi")


class _Ended(Exception):
    """The child ended while validating (args[0]: its exit code)."""


class Busy(Exception):
    """The worker cannot take or finish the request now: answer 503 with Retry-After."""


class ValidationWorker:
    """One child process that validates PUT bodies one at a time. start()/stop() bound its life."""

    def __init__(self, cpu_budget: float = DEFAULT_CPU_BUDGET) -> None:
        self.cpu_budget = cpu_budget
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._waiting = 0

    async def start(self) -> None:
        """Spawn the child now, so the first PUT does not pay for its imports."""
        async with self._lock:
            await self._spawn()

    async def stop(self) -> None:
        async with self._lock:
            await self._kill()

    async def validate(self, body: bytes, name: str, global_cfg: GlobalConfig,
                       allow_reading_files: bool, accept_unsupported_sd: bool = False) -> Validated:
        """Validated, or raises Rejected (4xx) or Busy (503)."""
        if self._waiting >= MAX_WAITING:
            raise Busy(f"{self._waiting} config validations are already waiting")
        self._waiting += 1
        try:
            job = (body, name, global_cfg, allow_reading_files, accept_unsupported_sd, self.cpu_budget)
            async with self._lock:
                try:
                    return await self._run(job)
                except _Ended:  # maybe killed for another reason (or earlier): one more try in a new process
                    try:
                        return await self._run(job)
                    except _Ended as exc:
                        raise Rejected(400, "config too costly to validate: the validation process ended "
                                            f"(exit code {exc.args[0]})") from None
        finally:
            self._waiting -= 1

    async def _run(self, job: tuple[Any, ...]) -> Validated:
        proc = await self._spawn()
        assert proc.stdin is not None and proc.stdout is not None
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            async with asyncio.timeout(self.cpu_budget * 3 + 10):
                proc.stdin.write(len(data).to_bytes(_HEADER, "big") + data)
                await proc.stdin.drain()
                size = int.from_bytes(await proc.stdout.readexactly(_HEADER), "big")
                reply = pickle.loads(await proc.stdout.readexactly(size))
        except TimeoutError:
            _log.warning("config validation did not finish in time; restarting its process", config=job[1])
            await self._kill()
            raise Busy("config validation did not finish in time") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            code = await self._kill()
            _log.warning("config validation process ended", config=job[1], exit_code=code)
            raise _Ended(code) from None
        kind = reply[0]
        if kind == "ok":
            return reply[1]  # type: ignore[no-any-return]
        if kind == "rejected":
            raise Rejected(reply[1], reply[2])
        if kind == "costly":
            raise Rejected(400, f"config too costly to validate: it took more than {self.cpu_budget:g}s of "
                                "CPU time to parse and validate")
        _log.error("config validation failed unexpectedly", config=job[1], err=reply[1])
        raise Rejected(400, f"could not validate config: {reply[1]}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.configapi.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        return self._proc

    async def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.returncode is None:
            proc.kill()
        return await proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None


# ------------------------------------------------------------------------------------------ the child


class _OverBudget(BaseException):
    """Raised by the SIGPROF handler; a BaseException so no `except Exception` in the validators eats it."""


def _over_budget(signum: int, frame: Any) -> None:
    raise _OverBudget


def _serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node's Ctrl-C is the node's; it stops us
    prefer_libyaml()  # no event loop here: the fast composer may hold the GIL
    signal.signal(signal.SIGPROF, _over_budget)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the frames
    while True:
        header = stdin.read(_HEADER)
        if len(header) < _HEADER:
            return  # the node closed the pipe
        body, name, global_cfg, allow, accept_sd, budget = pickle.loads(stdin.read(int.from_bytes(header, "big")))
        reply: tuple[Any, ...]
        try:
            signal.setitimer(signal.ITIMER_PROF, budget)
            try:
                reply = ("ok", validate_put(body, name, global_cfg, allow, accept_sd))
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _OverBudget:
            reply = ("costly",)
        except Rejected as exc:
            reply = ("rejected", exc.status, exc.message)
        except (RecursionError, MemoryError) as exc:
            reply = ("rejected", 400, f"config too costly to validate: {type(exc).__name__}")
        except Exception as exc:  # reported to the node, which logs it; the child keeps serving
            reply = ("error", f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(len(data).to_bytes(_HEADER, "big") + data)
        stdout.flush()


if __name__ == "__main__":
    _serve()
