"""The sync and async shells over an in-memory transport: retries and a resumed watch."""

from __future__ import annotations

import asyncio
import json

import httpx

from shoal.client import AsyncControlPlane, ControlPlane, Event

EVENTS = [
    {
        "type": "put",
        "revision": r,
        "kv": {
            "key": "k",
            "value": str(r),
            "create_revision": 1,
            "mod_revision": r,
            "version": r,
            "lease": None,
        },
        "prev_kv": None,
    }
    for r in (3, 4, 5)
]


def sse(revisions: list[int]) -> bytes:
    out = ": watching from revision 3\n\n"
    for e in EVENTS:
        if e["revision"] in revisions:
            out += f"id: {e['revision']}\nevent: put\ndata: {json.dumps(e)}\n\n"
    return out.encode()


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.host == "down":
        raise httpx.ConnectError("refused", request=request)
    if request.url.path == "/api/v1/watch":
        start = int(request.url.params.get("start_revision", "3"))
        # The first connection ends after revision 4; the resumed one serves the rest.
        return httpx.Response(200, content=sse([4] if start == 3 else [4, 5]))
    return httpx.Response(200, json={"revision": 7})


def test_sync_put_moves_past_a_dead_endpoint_and_watch_resumes() -> None:
    transport = httpx.MockTransport(handler)
    with ControlPlane("http://down:1,http://up:1", transport=transport) as plane:
        assert plane.put("k", "v") == 7
        events: list[Event] = []
        for event in plane.watch(prefix="k", start_revision=3):
            events.append(event)
            if len(events) == 2:
                break
    assert [e.revision for e in events] == [4, 5]


def test_async_shell_behaves_the_same() -> None:
    async def scenario() -> list[int]:
        transport = httpx.MockTransport(handler)
        async with AsyncControlPlane("http://down:1,http://up:1", transport=transport) as plane:
            assert await plane.put("k", "v") == 7
            seen: list[int] = []
            async for event in plane.watch(prefix="k", start_revision=3):
                seen.append(event.revision)
                if len(seen) == 2:
                    break
            return seen

    assert asyncio.run(scenario()) == [4, 5]
