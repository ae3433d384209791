"""A watch whose client stops reading loses nothing, and its stream stays well framed.

The client reads the headers, then stops reading while megabytes of events are written
(more than loopback's socket buffers hold, so the member's writes back up and its
stream waits for the client), then reads the rest: every event arrives once, in order,
intact, as HTTP/1.1 chunks that httpx's parser accepts.
"""

from __future__ import annotations

import json

import httpx

from shoal.testing import ServerProcess

WRITES = 200
VALUE = "v" * 32_000  # 200 x 32 kB


def test_a_watch_that_stops_reading_gets_every_event_in_order(server: ServerProcess) -> None:
    watcher = httpx.Client(base_url=server.url, timeout=30)
    writer = httpx.Client(base_url=server.url, timeout=30)
    seen: list[tuple[int, str]] = []
    try:
        with watcher.stream("GET", "/api/v1/watch", params={"prefix": "bp/"}) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines).startswith(": watching from revision")
            revisions = []
            for i in range(WRITES):  # nobody reads the watch meanwhile
                answer = writer.put(f"/api/v1/kv/bp/{i:04d}", json={"value": f"{i}:{VALUE}"})
                revisions.append(answer.json()["revision"])
            for line in lines:
                if line.startswith("data: "):
                    event = json.loads(line.removeprefix("data: "))
                    seen.append((event["revision"], event["kv"]["value"]))
                    if len(seen) == WRITES:
                        break
    finally:
        watcher.close()
        writer.close()
    assert [r for r, _ in seen] == revisions
    assert [v for _, v in seen] == [f"{i}:{VALUE}" for i in range(WRITES)]
