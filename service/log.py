"""Structured logging: logfmt by default, JSON by option, with `component=` and `instance=` fields.

Every line has `component=`: lines from other libraries' loggers (uvicorn, asyncio) get one from the logger's
name. Values are written as a user reads them: `true`/`false`, no `None` fields, lists and maps as JSON.
A condition that repeats (a remote that is down) is logged through `RepeatedWarning`, which says how often it
happened instead of writing the same line every few seconds.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from service.config.secrets import redact_url

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


# Attributes every LogRecord has; anything else on a record came from a plain logger's ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "fields", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": "warn" if record.levelname == "WARNING" else record.levelname.lower(),
    }
    out.update(getattr(record, "fields", None) or {})
    # plain stdlib loggers (other libraries) may pass fields as ``extra=``: keep them too
    out.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS})
    if "component" not in out:
        out = {"ts": out["ts"], "level": out["level"], "component": component_of(record.name),
               **{k: v for k, v in out.items() if k not in ("ts", "level")}}
    out = {k: v for k, v in out.items() if v is not None}
    out["msg"] = record.getMessage()
    if record.exc_info:
        out["err"] = logging.Formatter().formatException(record.exc_info)
    return out


def component_of(logger_name: str) -> str:
    """`service.cluster.sharder` → `cluster.sharder`; a library's logger → its top-level name (uvicorn)."""
    if logger_name.startswith("service."):
        return logger_name[len("service."):]
    if logger_name.startswith("uvicorn"):
        return "server"
    return logger_name.split(".", 1)[0] or "root"


def _text(value: Any) -> str:
    if hasattr(value, "_asdict"):  # a NamedTuple: its fields, not its repr
        value = value._asdict()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return orjson.dumps(sorted(value) if isinstance(value, (set, frozenset)) else value, default=str).decode()
    return str(value)


def _logfmt_value(value: Any) -> str:
    text = _text(value)
    if text == "" or any(c in text for c in ' ="\n\t\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # URL passwords never reach the log, whichever field or error message carries them
        return redact_url(" ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items()))


def _json_default(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return value._asdict()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_url(orjson.dumps(_fields(record), default=_json_default).decode())


def configure(level: str = "info", fmt: str = "logfmt") -> None:
    """(Re)configure the root logger; safe to call again on reload."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(max(LEVELS.get(level, logging.INFO), logging.WARNING))
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _StartupFailureFilter) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_StartupFailureFilter())


class _StartupFailureFilter(logging.Filter):
    """uvicorn logs a failed lifespan start-up as a formatted traceback; the node has already logged the reason
    in one line (`node failed to start`), so keep uvicorn's closing line and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Traceback (most recent call last)"):
            return False
        if record.exc_info and "startup failed" in str(record.msg).lower():
            record.exc_info = None
            record.exc_text = None
        return True


def get_logger(component: str, **fields: Any) -> logging.LoggerAdapter[logging.Logger]:
    """A logger that stamps `component=` (and any other fixed fields) on every line."""
    return _Adapter(logging.getLogger(f"service.{component}"), {"component": component, **fields})


class _Adapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        fields = dict(self.extra or {})
        fields.update(kwargs.pop("extra", None) or {})
        passed = ("exc_info", "stack_info", "stacklevel")
        fields.update({k: kwargs.pop(k) for k in list(kwargs) if k not in passed})
        kwargs["extra"] = {"fields": fields}
        return msg, kwargs


def _per(seconds: float) -> str:
    if seconds == 60:
        return "minute"
    return f"{seconds:g} s"


class RepeatedWarning:
    """One warning for a condition that repeats, at most once per `interval`, with how often it happened.

    The first failure is logged at once; later ones are counted and logged as
    `"<msg>; 17 failures in the last minute"` (also as `failures=17`) when `interval` has passed since the
    last line. `recovered()` logs once (at info) that the condition ended, with the failures it had counted.
    Thread-safe: the WAL's writer threads and the event loop may share one.
    """

    def __init__(self, logger: Any, msg: str, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.msg = msg
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._pending = 0  # failures not yet reported in a line
        self._total = 0  # failures since the condition started (reset by recovered())
        self._last_line: float | None = None

    def failed(self, **fields: Any) -> bool:
        """Count one failure; log when due. True when a line was written."""
        with self._lock:
            now = self.clock()
            self._pending += 1
            self._total += 1
            if self._last_line is not None and now - self._last_line < self.interval:
                return False
            count, self._pending, self._last_line = self._pending, 0, now
        plural = "failure" if count == 1 else "failures"
        self._emit(logging.WARNING, f"{self.msg}; {count} {plural} in the last {_per(self.interval)}",
                   **fields, failures=count)
        return True

    def recovered(self, msg: str, **fields: Any) -> bool:
        """Log `msg` (with the failures counted) if failures were seen since the last recovery."""
        with self._lock:
            total, self._total, self._pending, self._last_line = self._total, 0, 0, None
        if not total:
            return False
        self._emit(logging.INFO, msg, **fields, failures=total)
        return True

    def _emit(self, level: int, msg: str, **fields: Any) -> None:
        if isinstance(self.logger, logging.LoggerAdapter):
            self.logger.log(level, msg, **fields)
        else:  # a plain stdlib logger takes its fields as ``extra=``
            extra = fields.pop("extra", {})
            self.logger.log(level, msg, extra={**extra, **fields})
