"""`shoal kv put|get|list|del|watch`: the key space from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shoal.client import Event, KeyValue, WatchCompacted

from .common import (
    DEFAULT_ENDPOINTS,
    Endpoints,
    Json,
    control_plane,
    fail,
    jsonable,
    out,
    print_json,
)

app = typer.Typer(help="Read, write and watch keys.", no_args_is_help=True)


@app.command("put")
def put(
    key: str,
    value: str,
    lease: Annotated[int | None, typer.Option(min=1, help="Attach the key to this lease.")] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Set KEY to VALUE."""
    with control_plane(endpoints) as plane:
        revision = plane.put(key, value, lease=lease)
    if as_json:
        print_json({"revision": revision})
    else:
        out.print(f"OK (revision {revision})")


@app.command("get")
def get(
    key: str,
    stale: Annotated[
        bool, typer.Option("--stale", help="Serve from the member asked, maybe behind.")
    ] = False,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print the value of KEY (exit 1 if there is none)."""
    with control_plane(endpoints) as plane:
        kv = plane.get(key, "stale" if stale else "linearizable")
    if kv is None:
        raise fail(f"key {key!r} not found")
    if as_json:
        print_json(kv)
    else:
        typer.echo(kv.value)


def _table(kvs: list[KeyValue]) -> Table:
    table = Table("key", "value", "mod revision", "version", "lease")
    for kv in kvs:
        table.add_row(
            escape(kv.key),
            escape(kv.value),
            str(kv.mod_revision),
            str(kv.version),
            str(kv.lease) if kv.lease else "",
        )
    return table


@app.command("list")
def list_keys(
    prefix: Annotated[str, typer.Argument(help="Only keys starting with this.")] = "",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Show at most this many keys (default: all).")
    ] = None,
    stale: Annotated[bool, typer.Option("--stale", help="Serve from the member asked.")] = False,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """List the keys under PREFIX as a table."""
    kvs: list[KeyValue] = []
    more, revision = False, 0
    page_size = min(limit or 1000, 1000)
    with control_plane(endpoints) as plane:
        for page in plane.pages(prefix, page_size, "stale" if stale else "linearizable"):
            kvs.extend(page.kvs)
            revision, more = page.revision, page.more
            if limit is not None and len(kvs) >= limit:
                more = more or len(kvs) > limit
                kvs = kvs[:limit]
                break
    if as_json:
        print_json({"kvs": [jsonable(kv) for kv in kvs], "more": more, "revision": revision})
        return
    out.print(_table(kvs))
    note = " (more keys: raise --limit)" if more else ""
    out.print(f"{len(kvs)} key(s) at revision {revision}{note}")


@app.command("del")
def delete(
    key: str,
    prefix: Annotated[
        bool, typer.Option("--prefix", help="Delete every key starting with KEY.")
    ] = False,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Delete KEY (or, with --prefix, every key under it)."""
    with control_plane(endpoints) as plane:
        deleted = plane.delete(key, prefix=prefix)
    if as_json:
        print_json({"deleted": deleted})
    else:
        out.print(f"deleted {deleted} key(s)")


def _line(event: Event) -> str:
    if event.type == "put":
        return f"{event.revision} PUT {event.kv.key} = {event.kv.value}"
    return f"{event.revision} DELETE {event.kv.key}"


@app.command("watch")
def watch(
    target: Annotated[str, typer.Argument(metavar="PREFIX_OR_KEY")],
    prefix: Annotated[
        bool, typer.Option("--prefix/--key", help="Watch a prefix (default) or one key.")
    ] = True,
    start_revision: Annotated[
        int | None, typer.Option(min=1, help="Replay history from this revision.")
    ] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print each change under PREFIX (or of KEY) as it happens, until Ctrl-C."""
    if not prefix and not target:
        raise typer.BadParameter("a key to watch must not be empty", param_hint="PREFIX_OR_KEY")
    try:
        with control_plane(endpoints) as plane:
            events = plane.watch(
                prefix=target if prefix else None,
                key=None if prefix else target,
                start_revision=start_revision,
            )
            try:
                for event in events:
                    if as_json:
                        print_json(event)
                    else:
                        typer.echo(_line(event))
            except WatchCompacted as error:
                raise fail(
                    f"{error.message} (oldest kept revision: {error.compact_revision}); "
                    "list the keys again and watch from a newer revision"
                ) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
