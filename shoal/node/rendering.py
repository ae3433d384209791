"""How the API renders store values: JSON bodies, SSE frames, and watch streams.

One rendering for everyone: the FastAPI handlers and the ASGI fast path both build
their answers from these, and `json_bytes` renders exactly as FastAPI's `JSONResponse`
does (compact, UTF-8 unescaped, no NaN), so the two paths answer the same request with
the same bytes (tests/node/test_front.py holds them to it). An SSE frame of an event is
encoded once however many watchers receive it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..kv import Event, KeyValue
from .metrics import MemberMetrics
from .watchhub import Watcher, WatchHub


def json_bytes(obj: Any) -> bytes:
    """JSON exactly as the API's JSONResponse renders it (compact, UTF-8, no NaN)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def respond_json(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    """Send one complete JSON response in plain ASGI (the front and the fast path);
    `close` asks the server to close the connection after it."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": _text(kv.key),
        "value": _text(kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease or None,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "type": event.type.value.lower(),
        "revision": event.revision,
        "kv": kv_json(event.kv),
        "prev_kv": kv_json(event.prev_kv) if event.prev_kv else None,
    }


@functools.lru_cache(maxsize=8192)
def sse_event(event: Event) -> bytes:
    """One event as an SSE frame, encoded once however many watchers receive it."""
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.revision}\nevent: {event.type.value}\ndata: {data}\n\n".encode()


KEEPALIVE_SECONDS = 15.0
_KEEPALIVE = b": keep-alive\n\n"


class WatchResponse(Response):
    """A watcher served as Server-Sent Events, in plain ASGI.

    Why not `StreamingResponse`: it runs an async generator and a task group per stream
    and the stream waited with `wait_for` (a task per wait); at a thousand watchers those
    cost several times the socket writes themselves. Here each event batch costs one
    future callback, one render (cached per event) and one `send` per watcher. The client
    going away (or the ACL guard cutting the stream, which looks the same) is noticed by
    one task per stream that reads `receive` until `http.disconnect`.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: WatchHub,
        metrics: MemberMetrics,
        watcher: Watcher,
        render: Callable[[list[Event]], bytes],
        preamble: bytes,
    ) -> None:
        # Not Response.__init__: it would declare content-length: 0 for a streamed body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        self.hub = hub
        self.metrics = metrics
        self.watcher = watcher
        self.render_events = render
        self.preamble = preamble

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = self.watcher
        loop = asyncio.get_running_loop()
        gone = False
        idle = False

        def client_gone(_: object) -> None:
            nonlocal gone
            gone = True
            watcher.wake()

        def tick() -> None:
            nonlocal idle
            idle = True
            watcher.wake()
            self._timer = loop.call_later(KEEPALIVE_SECONDS, tick)

        self.metrics.watchers.inc()
        listener = asyncio.ensure_future(_until_disconnect(receive))
        listener.add_done_callback(client_gone)
        self._timer = loop.call_later(KEEPALIVE_SECONDS, tick)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self.preamble, "more_body": True})
            while not gone:
                await watcher.wait()
                if gone:
                    break
                events = watcher.drain()
                chunk = self.render_events(events) if events else b""
                if idle and not chunk:
                    chunk = _KEEPALIVE
                idle = False
                if watcher.closed is not None and not watcher.events:
                    reason = json.dumps({"error": "watch_closed", "message": watcher.closed})
                    chunk += f"event: error\ndata: {reason}\n\n".encode()
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    return
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self._timer.cancel()
            listener.remove_done_callback(client_gone)
            listener.cancel()
            self.hub.unsubscribe(watcher)
            self.metrics.watchers.dec()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def watch_stream(
    hub: WatchHub,
    metrics: MemberMetrics,
    watcher: Watcher,
    render: Callable[[list[Event]], bytes],
    preamble: bytes,
) -> WatchResponse:
    """Serve a subscribed watcher as Server-Sent Events until it closes or the client goes.

    `render` turns each drained batch of events into SSE frames (KV events, instances,
    config content...). Comments keep idle connections alive through proxies; a watcher
    the hub cut off ends with an `error` event saying where to resume.
    """
    return WatchResponse(hub, metrics, watcher, render, preamble)


__all__ = [
    "WatchResponse",
    "event_json",
    "json_bytes",
    "kv_json",
    "respond_json",
    "sse_event",
    "watch_stream",
]
