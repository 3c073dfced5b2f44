"""Limits on the node's HTTP connections, enforced in uvicorn's httptools protocol (uvicorn has none of them).

- Header size: a request whose request line and headers pass `max_header_bytes` is answered 431 before more
  is buffered (Go's net/http answers the same past its 1 MiB default).
- Header read timeout: a connection that has not sent a complete request head within `read_header_timeout`
  of connecting (or of starting its next request) is closed, so slow-loris clients free their descriptor.
- Connection limit: past `conn_limit` open connections a new one is answered 503 and closed at once, instead
  of holding a descriptor until the process runs out.
- Graceful close: when the node answers (413, 431, 503 ...) before a request's bytes have all arrived, the
  rest is read and discarded, up to `max_discard_bytes` and `linger_seconds`, before the connection closes,
  as nginx's lingering close does. Closing with unread bytes makes the kernel send a reset, and clients that
  send the whole body before reading (Python's urllib and http.client) would see that reset instead of the
  answer.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.log import get_logger

_log = get_logger("http.limits")

# Connections closing gracefully after a rejection are bounded too: past this many, close at once.
MAX_LINGERING = 256
HEAD_GRACE_SECONDS = 0.05  # a header timeout that expired is checked once more after this (see _head_check)
# Descriptors kept for everything else a node opens (WAL segments, KV, outgoing connections).
RESERVED_FDS = 256


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = 1 << 20
    read_header_timeout: float = 10.0  # seconds; 0 = none
    conn_limit: int = 1024  # 0 = none
    max_discard_bytes: int = 256 << 20  # above the largest body a route accepts (Loki push: 100 MiB)
    linger_seconds: float = 30.0  # total time a graceful close may take
    linger_idle_seconds: float = 5.0  # ... and the longest silence during it


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (as Go programs do at start); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def effective_conn_limit(configured: int, fd_limit: int) -> int:
    """The configured limit, lowered so that open connections can never exhaust the descriptors."""
    ceiling = max(16, fd_limit - RESERVED_FDS - MAX_LINGERING)
    if configured <= 0:
        return ceiling
    return min(configured, ceiling)


def _response(status: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n").encode() + extra + b"\r\n" + body


TOO_MANY_CONNECTIONS = _response(503, "Service Unavailable", "too many open connections", b"retry-after: 1\r\n")


def protocol_class(limits: ServerLimits) -> type[HttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` enforcing `limits` (one per server)."""
    return type("LimitedHTTPProtocol", (LimitedHTTPProtocol,), {"limits": limits, "lingering": set()})


class _CycleTransport:
    """The transport a request cycle sees: its close() waits for the request's remaining bytes."""

    def __init__(self, protocol: LimitedHTTPProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport
        self.write = transport.write  # the hot calls, bound once (not through __getattr__)
        self.is_closing = transport.is_closing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_after_request()


class LimitedHTTPProtocol(HttpToolsProtocol):
    limits: ClassVar[ServerLimits]
    lingering: ClassVar[set[LimitedHTTPProtocol]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._head_tail = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = self.loop.time()
        self._head_grace = False
        self._begun = False
        self._body_pending = False
        self._close_at_message_end = False
        self._discarded = 0
        self._rejected = False  # answered without parsing: the rest of the input is discarded
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_start = 0.0
        self._linger_last = 0.0

    # --- connection ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = self.limits.conn_limit
        if limit and len(self.connections) >= limit:
            self.transport = transport
            self._reject(TOO_MANY_CONNECTIONS)
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.lingering.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected or self._close_at_message_end:
            self._linger_last = self.loop.time()
        if self._rejected:
            self._discard(len(data))
            return
        max_head = self.limits.max_header_bytes
        if self._reading_head and max_head:
            seen = self._head_bytes + len(data)
            if seen > max_head:
                # this chunk may also hold the end of the head and the start of the body
                end = (self._head_tail + data).find(b"\r\n\r\n")
                if end < 0 or self._head_bytes - len(self._head_tail) + end + 4 > max_head:
                    self._reject(_response(431, "Request Header Fields Too Large",
                                           f"request header fields too large: the limit is {max_head} bytes"))
                    return
            self._head_bytes = seen
            self._head_tail = data[-3:]
        super().data_received(data)

    # --- parser callbacks ---------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        if self._begun:  # a later request on a kept-alive connection; the first one counts from the connect
            self._head_started = self.loop.time()
            self._head_grace = False
        self._begun = True
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False  # the head timer, if armed, finds this and stops (no per-request cancel)
        self._head_bytes = 0
        self._head_tail = b""
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:
            self._body_pending = True
            self.cycle.transport = _CycleTransport(self, self.transport)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None and self.cycle.response_complete:
            self._discard(len(body))  # answered already: the rest of the body is read and dropped
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._reading_head = True
        self._head_bytes = 0
        self._head_tail = b""
        if self._close_at_message_end:
            self.transport.close()
            return
        super().on_message_complete()

    # --- closing ------------------------------------------------------------------------------------------
    def close_after_request(self) -> None:
        """Close once the current request's bytes are in: at its end, past the discard bound or the linger
        time, whichever comes first."""
        if not self._body_pending or self.transport.is_closing():
            self.transport.close()
            return
        self._close_at_message_end = True
        if self.flow is not None:
            self.flow.resume_reading()
        self._start_linger()

    def _reject(self, response: bytes) -> None:
        """Answer without reading further, then close gracefully (or at once when too many are closing)."""
        self._rejected = True
        self._cancel_timers()
        self.transport.write(response)
        if len(self.lingering) >= MAX_LINGERING:
            self.transport.close()
            return
        self.lingering.add(self)
        self.transport.resume_reading()
        self._start_linger()

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > self.limits.max_discard_bytes:
            self.transport.close()

    def _start_linger(self) -> None:
        now = self.loop.time()
        self._linger_start = self._linger_last = now
        self._linger_timer = self.loop.call_later(self.limits.linger_idle_seconds, self._linger_check)

    def _linger_check(self) -> None:
        now = self.loop.time()
        end = min(self._linger_start + self.limits.linger_seconds,
                  self._linger_last + self.limits.linger_idle_seconds)
        if now >= end:
            self._linger_timer = None
            self.transport.close()
        else:
            self._linger_timer = self.loop.call_later(end - now, self._linger_check)

    def _arm_head_timer(self, delay: float | None = None) -> None:
        """One timer per connection at most, re-armed only while a head is being read: keep-alive requests
        cost no timer each."""
        timeout = self.limits.read_header_timeout
        if timeout > 0 and self._head_timer is None:
            self._head_timer = self.loop.call_later(timeout if delay is None else delay, self._head_check)

    def _head_check(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        remaining = self._head_started + self.limits.read_header_timeout - self.loop.time()
        if remaining > 0:
            self._arm_head_timer(remaining)
            return
        if not self._head_grace:
            # uvloop runs due timers before it polls the sockets: after the loop stalled, bytes the client
            # sent in time may be waiting unread. Decide after one more poll, so only a slow client is closed.
            self._head_grace = True
            self._arm_head_timer(HEAD_GRACE_SECONDS)
            return
        _log.debug("closing a connection that sent no complete request head in time", client=self.client)
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger_timer = None
