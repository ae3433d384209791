"""Keep-alive connections to upstream instances: one raw asyncio connection per request.

Theory of operation. An `UpstreamConnection` is an asyncio protocol with its own
httptools response parser; while it carries a request it belongs to exactly one
exchange (`shoal.gateway.proxy`), which receives its parser's callbacks. When the
response is complete and both sides may keep the connection, the exchange gives it back
to the `ConnectionPool`, which keeps idle connections per instance address, newest
last, and hands out the newest first (so a burst's extra connections age out instead of
being kept warm by round-robin reuse). An idle connection the instance closes leaves the
pool at once (`connection_lost`); one idle for longer than `idle_timeout` is closed by
the sweep. The default, 4 s, is below the 5 s keep-alive of uvicorn and most Python
servers, so the gateway closes first and rarely sends a request on a connection the
instance is closing.

Responses to HEAD carry a Content-Length but no body, which the parser cannot know:
the connection is told (`expect_head`) and ends the message after the head, with a new
parser for the next response. 1xx interim responses are skipped.

Never: give a connection to two exchanges, keep one whose response was not read to its
end, or read from an idle one (data arriving on an idle connection closes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from .writes import DIRECT, WriteCoalescer, flush

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ConnectionPool", "ResponseSink", "UpstreamConnection"]

WRITE_HIGH, WRITE_LOW = 256 * 1024, 64 * 1024


class ResponseSink(Protocol):
    """What an exchange offers the connection that carries its request."""

    def response_head(
        self, status: int, keep_alive: bool, headers: list[tuple[bytes, bytes]]
    ) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_complete(self) -> None: ...

    def response_flush(self) -> None: ...

    def upstream_error(self, connection: UpstreamConnection, what: str, clean: bool) -> None: ...

    def upstream_pause(self) -> None: ...

    def upstream_resume(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_head_only",
        "_interim",
        "addr",
        "closed",
        "headers",
        "idle_since",
        "parser",
        "pending",
        "pool",
        "sink",
        "transport",
    )

    def __init__(self, pool: ConnectionPool, addr: tuple[str, int]) -> None:
        self.pool, self.addr = pool, addr
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.closed = False
        self.idle_since = 0.0
        self.pending: list[bytes] = []  # written this iteration (`shoal.gateway.writes`)
        self._head_only = False
        self._interim = False

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:  # nobody asked: an idle connection must stay silent
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self.sink is sink:
                self.sink = None
                self.close()
                sink.upstream_error(self, f"sent a malformed response ({error})", False)
        sink.response_flush()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost tells the sink

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        if sink is not None:
            what = "closed the connection" if exc is None else str(exc) or type(exc).__name__
            sink.upstream_error(self, what, exc is None)
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_pause()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_resume()

    # -- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        sink = self.sink
        if sink is None:
            return
        headers, self.headers = self.headers, []
        status = self.parser.get_status_code()
        if status < 200:
            # 100 Continue, 103 Early Hints: the real answer follows. (101 needs an
            # Upgrade, which the gateway never forwards.)
            self._interim = True
            return
        sink.response_head(status, self.parser.should_keep_alive(), headers)
        if self._head_only and self.sink is sink:
            # No body follows a HEAD answer, whatever Content-Length says; a fresh parser
            # reads the next response.
            self.parser = httptools.HttpResponseParser(self)
            self._head_only = False
            self.sink = None
            sink.response_complete()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_complete()

    # -- for the exchange -------------------------------------------------------------

    def attach(self, sink: ResponseSink, *, head_only: bool) -> None:
        self.sink = sink
        self.headers = []
        self._head_only = head_only
        self._interim = False

    def detach(self) -> None:
        self.sink = None

    def write(self, data: bytes) -> None:
        pending = self.pending
        if len(data) >= DIRECT:  # a streaming body: at once, so that flow control acts
            self.flush()
            if not self.closed:
                assert self.transport is not None
                self.transport.write(data)
            return
        if not pending:
            self.pool.writes.enrol(self)
        pending.append(data)

    def flush(self) -> None:
        flush(self)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.sink = None
        self.pending = []
        if self.transport is not None:
            self.transport.abort()  # unread data or a half-sent request: no lingering


class ConnectionPool:
    """Idle keep-alive connections per upstream address; see the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_idle_per_host: int = 256,
        idle_timeout: float = 4.0,
    ) -> None:
        self.loop = loop
        self.writes = WriteCoalescer(loop)  # shared with the client side (ProxyContext)
        self.max_idle_per_host, self.idle_timeout = max_idle_per_host, idle_timeout
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._addrs: dict[str, tuple[str, int]] = {}

    def address(self, base_url: str) -> tuple[str, int]:
        """(host, port) of an `Endpoint.base_url` ("http://10.0.0.5:8001"), cached."""
        addr = self._addrs.get(base_url)
        if addr is None:
            hostport = base_url.removeprefix("http://")
            host, _, port = hostport.rpartition(":")
            addr = (host.strip("[]"), int(port))
            if len(self._addrs) > 10_000:  # instances come and go: never grow for ever
                self._addrs.clear()
            self._addrs[base_url] = addr
        return addr

    def acquire(self, addr: tuple[str, int]) -> UpstreamConnection | None:
        idle = self._idle.get(addr)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def connect(
        self, addr: tuple[str, int], factory: Callable[[], UpstreamConnection] | None = None
    ) -> UpstreamConnection:
        """A new connection to `addr` (OSError if it cannot be made)."""
        _, connection = await self.loop.create_connection(
            factory or (lambda: UpstreamConnection(self, addr)), addr[0], addr[1]
        )
        return connection

    def release(self, connection: UpstreamConnection) -> None:
        """Take back a connection whose exchange is over and may be reused."""
        if connection.closed:
            return
        idle = self._idle.get(connection.addr)
        if idle is None:
            idle = self._idle[connection.addr] = []
        if len(idle) >= self.max_idle_per_host:
            connection.close()
            return
        connection.sink = None
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def discard(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.addr)
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(connection)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than `idle_timeout` (oldest are first)."""
        limit = now - self.idle_timeout
        for addr, idle in list(self._idle.items()):
            stale = 0
            while stale < len(idle) and idle[stale].idle_since < limit:
                idle[stale].close()
                stale += 1
            if stale:
                del idle[:stale]
            if not idle:
                del self._idle[addr]

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
