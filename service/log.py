"""Structured logging: logfmt by default, JSON by option, with `component=` and `instance=` fields."""

from __future__ import annotations

import logging
import sys
import time
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
    # stdlib loggers (WAL, remote_write queue) pass their fields as ``extra=``: keep them too
    out.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS})
    out["msg"] = record.getMessage()
    if record.exc_info:
        out["err"] = logging.Formatter().formatException(record.exc_info)
    return out


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # URL passwords never reach the log, whichever field or error message carries them
        return redact_url(" ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items()))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_url(orjson.dumps(_fields(record), default=str).decode())


def configure(level: str = "info", fmt: str = "logfmt") -> None:
    """(Re)configure the root logger; safe to call again on reload."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(max(LEVELS.get(level, logging.INFO), logging.WARNING))


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
