"""WatchResponse in plain ASGI: events as frames, keep-alives while idle, the stream ends
(and unsubscribes) when the client goes or the hub cuts the watcher off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.kv import KeyValueStore, Put, WatchFilter
from shoal.node import rendering
from shoal.node.metrics import MemberMetrics
from shoal.node.rendering import WatchResponse, sse_event
from shoal.node.watchhub import WatchHub


async def _serve(
    hub: WatchHub, store: KeyValueStore, act: Any
) -> tuple[list[dict[str, Any]], asyncio.Event]:
    """Serve one prefix watcher, run `act(gone)`, return what was sent."""
    watcher = hub.subscribe(store, WatchFilter.prefix(b"a/"), store.revision + 1)
    response = WatchResponse(
        hub, MemberMetrics(), watcher, lambda es: b"".join(map(sse_event, es)), b": hi\n\n"
    )
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    serving = asyncio.ensure_future(response({"type": "http"}, receive, send))
    await act(gone)
    await asyncio.wait_for(serving, 5)
    return sent, gone


def test_events_keepalives_and_the_client_going(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "KEEPALIVE_SECONDS", 0.05)
    store, hub = KeyValueStore(), WatchHub()

    async def act(gone: asyncio.Event) -> None:
        await asyncio.sleep(0.12)  # two keep-alives
        store.apply(Put(key=b"a/1", value=b"v"), now=0.0)
        store.apply(Put(key=b"b/1", value=b"v"), now=0.0)
        hub.publish(store)
        await asyncio.sleep(0.01)
        gone.set()

    sent, _ = asyncio.run(_serve(hub, store, act))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[0] == b": hi\n\n"
    assert bodies.count(b": keep-alive\n\n") >= 2
    frames = [b for b in bodies if b.startswith(b"id: ")]
    assert len(frames) == 1 and b'"key":"a/1"' in frames[0]
    assert hub.count == 0  # unsubscribed once the client went


def test_a_cut_off_watcher_ends_with_an_error_event() -> None:
    store, hub = KeyValueStore(), WatchHub(buffer=1)

    async def act(gone: asyncio.Event) -> None:
        await asyncio.sleep(0)
        for i in range(3):
            store.apply(Put(key=f"a/{i}".encode(), value=b"v"), now=0.0)
            hub.publish(store)  # no loop step between: the stream cannot keep up

    sent, _ = asyncio.run(_serve(hub, store, act))
    last = sent[-1]
    assert last["more_body"] is False and b"event: error" in last["body"]
    assert b"resume from revision" in last["body"] and hub.count == 0
