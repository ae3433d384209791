"""The async shell's unary requests, on asyncio protocols and httptools.

Why not httpx here. A KV put through `httpx.AsyncClient` cost its caller ~1.7 ms of CPU
on this project's 2-core machine, against ~0.12 ms for the same request written on an
asyncio protocol with an httptools parser (`bench/client_wire.py` measures both side by
side). An events publish, a registration, a heartbeat, a consumer's offset commit: each
is one such request, and in a process that both publishes and consumes the client was
the busiest part of the system. Streams (watches, keep-alive streams) stay on httpx:
one request per stream, its cost paid once.

Theory of operation. `Wire` keeps idle keep-alive connections per endpoint (newest
last, handed out newest first) and opens a new one when none is idle. A request is one
`write` of its head and body; its `_Connection` parses the answer with httptools and
resolves one future with (status, body). A connection carries one request at a time
and goes back to the pool only after a complete answer that allows keep-alive. Errors
are `shoal.client.errors.Unavailable`, worded like the httpx shell's: a connection that
could not be made says `request_sent=False` (nothing reached the server, any request
may be sent again); a timeout or a connection lost mid-answer says the request may have
arrived. A connection idle for longer than `IDLE_SECONDS` is not reused (httpx's
keep-alive expiry; the member keeps idle connections for 60 s).

On by default; `AsyncControlPlane(wire=False)` or `SHOAL_CLIENT_WIRE=0` keeps httpx for
everything. Connections that finish after `close()` are closed rather than pooled; those
of an event loop that was closed without `aclose()` can only be let go (their transports
warn when collected, as any asyncio transport left open does).

Bound to the event loop it first ran on: on another loop (a second `asyncio.run`) it
closes the old loop's connections (or lets them go, if that loop is closed) and starts
afresh, where httpx fails with "Event loop is closed".
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlencode, urlsplit

import httptools

from .errors import ShoalError, Unavailable

__all__ = ["IDLE_SECONDS", "MAX_CONNECTIONS", "Wire"]

IDLE_SECONDS = 5.0  # an idle connection older than this is closed, not reused (httpx's)
MAX_IDLE = 32  # idle connections kept per endpoint
MAX_CONNECTIONS = 100  # open at once per endpoint; more requests wait (httpx's limit)


class _Connection(asyncio.Protocol):
    __slots__ = ("body", "closed", "idle_since", "parser", "transport", "url", "waiter")

    def __init__(self, url: str) -> None:
        self.url = url
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.body: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: an idle connection must stay silent
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(Unavailable(f"{self.url} sent a malformed response ({error})"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost tells a waiting request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        why = "closed the connection" if exc is None else str(exc) or type(exc).__name__
        self._fail(Unavailable(f"connection to {self.url} failed: the server {why}"))

    # httptools callbacks (only these two: no per-header call)
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        if waiter is not None and not waiter.done():
            waiter.set_result(
                (self.parser.get_status_code(), body, self.parser.should_keep_alive())
            )

    def _fail(self, error: ShoalError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Endpoint:
    """One base URL: where to connect, and its idle connections."""

    __slots__ = ("host", "host_header", "idle", "port", "slots", "tls", "url")

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        https = parts.scheme == "https"
        self.port = parts.port or (443 if https else 80)
        self.host_header = parts.netloc.encode("idna")
        self.tls = (ssl_context or ssl.create_default_context()) if https else None
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)


class Wire:
    """Keep-alive HTTP/1.1 connections to the control plane's endpoints; see above."""

    def __init__(
        self, *, headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._extra = b"".join(
            b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        )
        self._ssl = ssl_context
        self._endpoints: dict[str, _Endpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request(
        self,
        url: str,
        method: str,
        path: str,
        params: tuple[tuple[str, str], ...] | list[tuple[str, str]],
        body: bytes | None,
        timeout: float,
    ) -> tuple[int, bytes]:
        """(status, body) of one request to `url` + `path`."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that made them
            self.close()
            self._loop = loop
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = self._endpoints[url] = _Endpoint(url, self._ssl)
        target = (
            path.encode() if not params else b"%s?%s" % (path.encode(), urlencode(params).encode())
        )
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\n%s" % (
            method.encode(),
            target,
            endpoint.host_header,
            self._extra,
        )
        if body is None:
            message = head + b"\r\n"
        else:
            message = b"%scontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
                head,
                len(body),
                body,
            )
        async with endpoint.slots:
            connection = self._idle_connection(endpoint)
            if connection is None:
                connection = await self._connect(endpoint, timeout)
            waiter = loop.create_future()
            connection.waiter = waiter
            assert connection.transport is not None
            connection.transport.write(message)
            try:
                async with asyncio.timeout(timeout):
                    status, answer, keep_alive = await waiter
            except TimeoutError:
                connection.close()
                raise Unavailable(f"{url} did not answer in time (after {timeout:g} s)") from None
            except BaseException:
                connection.close()  # cancelled or failed mid-answer: its state is unknown
                raise
            # Back to the pool only if the pool is still this one: after a close() (or a
            # loop switch) while this request was out, nobody would ever close it.
            if (
                keep_alive
                and not connection.closed
                and self._endpoints.get(url) is endpoint
                and len(endpoint.idle) < MAX_IDLE
            ):
                connection.idle_since = time.monotonic()
                endpoint.idle.append(connection)
            else:
                connection.close()
            return status, answer

    @staticmethod
    def _idle_connection(endpoint: _Endpoint) -> _Connection | None:
        idle = endpoint.idle
        fresh = time.monotonic() - IDLE_SECONDS
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= fresh:
                return connection
            connection.close()
        return None

    async def _connect(self, endpoint: _Endpoint, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        url = endpoint.url
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(url),
                    endpoint.host,
                    endpoint.port,
                    ssl=endpoint.tls,
                    server_hostname=endpoint.host if endpoint.tls is not None else None,
                )
        except TimeoutError:
            raise Unavailable(
                f"cannot connect to {url}: no connection within {timeout:g} s", request_sent=False
            ) from None
        except OSError as error:  # refused, unreachable, a TLS handshake refused
            reason = error.strerror or str(error) or type(error).__name__
            raise Unavailable(f"cannot connect to {url}: {reason}", request_sent=False) from None
        return connection

    def close(self) -> None:
        """Close the idle connections (those of a loop already closed can only be let go)."""
        loop, endpoints, self._endpoints = self._loop, self._endpoints, {}
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for endpoint in endpoints.values():
            for connection in endpoint.idle:
                if loop is running:
                    connection.close()
                else:
                    loop.call_soon_threadsafe(connection.close)
            endpoint.idle.clear()
