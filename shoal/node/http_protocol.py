"""uvicorn's httptools protocol, with each response's writes sent as one, and with the
connection limits uvicorn lacks.

Coalescing. uvicorn writes a response's status line and headers, then its body, as two
`transport.write` calls, and uvloop sends each at once -- two `send` syscalls for every
small answer. On the API's hot paths (a heartbeat, a KV put) those two syscalls were
~40% of the member's CPU per request in a profile. Here the transport is wrapped so that
the writes made during one step of the event loop are joined and sent together right
after it: the same bytes in the same order, one syscall.

Limits (issue 17). uvicorn's only timer is the keep-alive one, armed after a response:
a client that connects and sends nothing, or sends its headers a byte at a time
(slowloris), holds a connection for ever. So:

- **header timeout**: from the moment a connection opens, or the first byte of the next
  request on it, the request's headers must be complete within `header_timeout`
  seconds, and no gap between two chunks of its body may be longer; otherwise the
  member answers 408 (when no response has begun) and closes the connection;
- **idle timeout**: uvicorn's keep-alive timer, set from `idle_timeout`;
- **connection limit**: a connection beyond `max_connections` open ones is answered 503
  at once and closed, before it can hold a file descriptor for long.

Never: reorder bytes, or hold them past the current loop step (a streaming response's
chunks still leave as they are produced); closing flushes first. A streaming response
(a watch) is never timed out: the timers only run while a request is being received.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol"]


class _CoalescingTransport:
    """A transport proxy that batches `write`s until the end of the loop step."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, reading control, flow-control limits) is the
        # real transport's.
        return getattr(self._transport, name)


def _canned(status: bytes, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode()
    head = (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, len(body))
    )
    return head + body


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """The protocol with its limits; `configured()` makes a subclass with other values."""

    header_timeout: float = 10.0
    max_connections: int = 10_000

    _reading: asyncio.TimerHandle | None = None

    @classmethod
    def configured(
        cls, *, header_timeout: float, max_connections: int
    ) -> type[CoalescingHttpToolsProtocol]:
        limits = {"header_timeout": header_timeout, "max_connections": max_connections}
        return type("ShoalHttpProtocol", (cls,), limits)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        proxy = _CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(proxy)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            self.logger.warning("refused a connection: %d open", len(self.connections) - 1)
            message = f"more than {self.max_connections} connections are open; retry later"
            self.transport.write(_canned(b"503 Service Unavailable", "unavailable", message))
            self.transport.close()
            return
        self._arm_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_reading()
        super().connection_lost(exc)

    # The request is being received from the first byte to the end of its body: that is
    # when a client can stall us, and when the timer runs.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_reading()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm_reading()  # now the gap allowed before the (next) body chunk

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_reading()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm_reading()

    def _arm_reading(self) -> None:
        self._disarm_reading()
        self._reading = self.loop.call_later(self.header_timeout, self._reading_timed_out)

    def _disarm_reading(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    def _reading_timed_out(self) -> None:
        self._reading = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # no response has begun
            message = f"the request was not received within {self.header_timeout:g}s"
            self.transport.write(_canned(b"408 Request Timeout", "request_timeout", message))
        self.transport.close()
