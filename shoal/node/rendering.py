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
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Send

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


def watch_stream(
    hub: WatchHub,
    metrics: MemberMetrics,
    watcher: Watcher,
    render: Callable[[list[Event]], bytes],
    preamble: bytes,
) -> StreamingResponse:
    """Serve a subscribed watcher as Server-Sent Events until it closes or the client goes.

    `render` turns each drained batch of events into SSE frames (KV events, instances,
    config content...). Comments keep idle connections alive through proxies; a watcher
    the hub cut off ends with an `error` event saying where to resume.
    """
    metrics.watchers.inc()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield preamble
            while True:
                if not watcher.events and watcher.closed is None:
                    try:
                        await asyncio.wait_for(watcher.wakeup.wait(), 15.0)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                events = watcher.drain()
                chunk = render(events) if events else b""
                if chunk:
                    yield chunk
                if watcher.closed is not None and not watcher.events:
                    reason = json.dumps({"error": "watch_closed", "message": watcher.closed})
                    yield f"event: error\ndata: {reason}\n\n".encode()
                    return
        finally:
            hub.unsubscribe(watcher)
            metrics.watchers.dec()

    return StreamingResponse(stream(), media_type="text/event-stream")


__all__ = ["event_json", "json_bytes", "kv_json", "respond_json", "sse_event", "watch_stream"]
