"""The admin port of one gateway process: health, metrics and what it routes to.

    GET /healthz     200 {"status": "ok", ...}  (503 before the first route table
                     and while draining)
    GET /metrics     Prometheus text (this process's series)
    GET /routes      the route table in force and where it came from
    GET /upstreams   every pool: its view of the registry and each instance's load,
                     breaker state and ejection

Kept off the proxy port on purpose: a route table can route every path, and the
operator's endpoints should not be reachable from outside. One small protocol, one
request per connection; nothing here is on a request's path.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from . import metrics

if TYPE_CHECKING:
    from .server import Gateway

__all__ = ["start_admin"]


class _AdminConnection(asyncio.Protocol):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(400, b"application/json", b'{"error": "bad_request"}\n')

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        from .server import dumps

        path = self.url.split(b"?", 1)[0]
        gateway = self.gateway
        draining = gateway.ctx is not None and gateway.ctx.draining
        if path == b"/healthz":
            # Not healthy before the first route table: with only a config item as the
            # source, a supervisor must not send traffic before its content arrived.
            status = "draining" if draining else "ok" if gateway.has_routes else "no routes yet"
            body = dumps({"status": status, **gateway.status()})
            self._send(200 if status == "ok" else 503, b"application/json", body)
        elif path == b"/metrics":
            self._send(200, metrics.CONTENT_TYPE_LATEST.encode(), metrics.render())
        elif path == b"/routes":
            self._send(200, b"application/json", dumps(gateway.routing.describe()))
        elif path == b"/upstreams":
            self._send(200, b"application/json", dumps(gateway.upstreams.describe()))
        else:
            self._send(404, b"application/json", b'{"error": "not_found"}\n')

    def _send(self, status: int, content_type: bytes, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
            status,
            {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 503: b"Unavailable"}[status],
            content_type,
            len(body),
        )
        self.transport.write(head + b"connection: close\r\n\r\n" + body)
        self.transport.close()


async def start_admin(gateway: Gateway, host: str, port: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _AdminConnection(gateway), host, port)
