"""`shoal events publish|tail|groups|lag|replay`: topics from the command line.

Every command takes `--url` (env SHOAL_EVENTS_URL): control-plane endpoints for the
built-in backend (default: --endpoints / SHOAL_ENDPOINTS), or `redis://...`.
Errors print one red line and exit 1; bad input names what is wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shoal.events import AsyncEvents, Events, EventsError, Message, TopicConfig

from .common import DEFAULT_ENDPOINTS, Endpoints, Json, fail, out, print_json

app = typer.Typer(help="Publish, follow and manage event topics and groups.", no_args_is_help=True)

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="SHOAL_EVENTS_URL",
        help="The backend: redis://host:port, or control-plane URLs (default: --endpoints).",
    ),
]


def _url(url: str | None, endpoints: str) -> str:
    return url or endpoints or os.environ.get("SHOAL_ENDPOINTS") or DEFAULT_ENDPOINTS


def _bus(url: str | None, endpoints: str) -> Events:
    try:
        return Events(_url(url, endpoints))
    except EventsError as error:
        raise fail(error.message) from None


def _message_json(message: Message) -> dict[str, object]:
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "id": message.id,
        "key": message.key,
        "headers": dict(message.headers),
        "timestamp": message.timestamp,
        "payload": message.payload.decode("utf-8", "replace"),
    }


@app.command("publish")
def publish(
    topic: str,
    payload: Annotated[
        str | None, typer.Argument(help="The payload; '-' or none: read stdin.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Keeps order (and one consumer) per key.")] = None,
    message_id: Annotated[
        str | None, typer.Option("--id", help="Deduplicated: a retried publish is a no-op.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="name=value (repeatable).")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Create the topic with this many partitions.")
    ] = None,
    url: Url = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Publish one message to TOPIC; prints its partition and offset."""
    body = sys.stdin.read() if payload in (None, "-") else payload
    headers: dict[str, str] = {}
    for item in header or []:
        name, eq, value = item.partition("=")
        if not eq:
            raise fail(f"header {item!r} must be name=value")
        headers[name] = value
    with _bus(url, endpoints) as bus:
        try:
            if partitions is not None:
                bus.create_topic(topic, TopicConfig(partitions=partitions))
            result = bus.publish(topic, body or "", key=key, headers=headers, id=message_id)
        except EventsError as error:
            raise fail(error.message) from None
    if as_json:
        print_json(result.to_json())
    else:
        note = " (duplicate: already published)" if result.duplicate else ""
        out.print(f"OK partition {result.partition} offset {result.offset} id {result.id}{note}")


@app.command("tail")
def tail(
    topic: str,
    from_offset: Annotated[
        int | None, typer.Option("--from", min=0, help="Start at this offset (default: now).")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="Stop after N.")] = None,
    url: Url = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print TOPIC's messages as they are published (a plain subscriber: no group)."""

    async def run() -> None:
        seen = 0
        async with AsyncEvents(_url(url, endpoints)) as bus:
            async for message in bus.tail(topic, from_offset):
                if as_json:
                    print_json(_message_json(message))
                else:
                    key = f" key={message.key}" if message.key else ""
                    text = escape(message.payload.decode("utf-8", "replace"))
                    out.print(f"{message.offset} [{message.partition}]{key} {text}")
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        asyncio.run(run())
    except EventsError as error:
        raise fail(error.message) from None
    except KeyboardInterrupt:
        pass


@app.command("groups")
def groups(
    topic: str, url: Url = None, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False
) -> None:
    """The consumer groups of TOPIC, their members and who holds each partition."""
    with _bus(url, endpoints) as bus:
        try:
            infos = bus.groups(topic)
        except EventsError as error:
            raise fail(error.message) from None
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    table = Table("group", "members", "partitions held")
    for info in infos:
        held = ", ".join(f"{p}:{m}" for p, m in sorted(info.claims.items())) or "-"
        table.add_row(info.group, str(len(info.members)), held)
    out.print(table)


@app.command("lag")
def lag(
    topic: str,
    group: str,
    url: Url = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """How far GROUP is behind on TOPIC, per partition."""
    with _bus(url, endpoints) as bus:
        try:
            result = bus.lag(topic, group)
        except EventsError as error:
            raise fail(error.message) from None
    if as_json:
        print_json(result.to_json())
        return
    table = Table("partition", "committed offset", "pending", "owner")
    for row in result.partitions:
        table.add_row(str(row.partition), str(row.committed), str(row.pending), row.owner or "-")
    out.print(table)
    out.print(f"lag: {result.total}")


@app.command("replay")
def replay(
    topic: str,
    group: str,
    offset: Annotated[int | None, typer.Option("--offset", min=0, help="From this offset.")] = None,
    at: Annotated[
        str | None,
        typer.Option("--time", help="From this time: ISO 8601 or seconds since the epoch."),
    ] = None,
    url: Url = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Move GROUP to an offset or a time; its consumers resume from there."""
    when: float | None = None
    if at is not None:
        try:
            when = float(at)
        except ValueError:
            try:
                when = datetime.fromisoformat(at).timestamp()
            except ValueError:
                raise fail(
                    f"--time {at!r} is neither ISO 8601 nor seconds since the epoch"
                ) from None
    if (offset is None) == (when is None):
        raise fail("give exactly one of --offset or --time")
    with _bus(url, endpoints) as bus:
        try:
            targets = bus.replay(topic, group, offset=offset, at=when)
        except EventsError as error:
            raise fail(error.message) from None
    if as_json:
        print_json({str(p): o for p, o in targets.items()})
    else:
        out.print(json.dumps({str(p): o for p, o in targets.items()}))
