"""`shoal services` and `shoal service show|register|deregister|watch`: the registry from
the command line, through `ControlPlane.registry` (the client tries the `--endpoints` in
turn; followers forward writes to the leader themselves). Errors from the server become a
red line on stderr and exit status 1.

To mount (in `shoal/cli/main.py`):
    app.command("services")(registry.services)
    app.add_typer(registry.app, name="service")
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shoal.client import ControlPlane, ShoalError
from shoal.client.registry import InstanceEvent

from .common import (
    DEFAULT_ENDPOINTS,
    Endpoints,
    Json,
    control_plane,
    endpoints_of,
    fail,
    out,
    print_json,
)

app = typer.Typer(
    help="Show, register, deregister and watch service instances.", no_args_is_help=True
)

WATCH_RETRY_BUDGET = 60.0  # seconds a watch keeps trying to reconnect


def _pairs(items: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {item!r}", param_hint="--meta")
        pairs[key] = value
    return pairs


def services(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """List the registered services with their instance and healthy counts."""
    with control_plane(endpoints) as cp:
        found = cp.registry.services()
    if as_json:
        print_json(found.to_json())
        return
    table = Table("service", "instances", "healthy")
    for s in found.services:
        table.add_row(escape(s.name), str(s.instances), str(s.healthy))
    out.print(table)
    out.print(f"{len(found.services)} service(s) at revision {found.revision}")


def _health(status: str) -> str:
    colour = {"passing": "green", "warning": "yellow", "critical": "red"}.get(status, "white")
    return f"[{colour}]{status}[/{colour}]"


@app.command("show")
def show(
    name: str,
    healthy: Annotated[bool, typer.Option("--healthy", help="Only healthy instances.")] = False,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Require this tag.")] = None,
    zone: Annotated[str | None, typer.Option("--zone", help="Only this zone.")] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help="Require metadata K=V.")] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Show the instances of service NAME (as discovery would return them)."""
    filters = _pairs(meta)
    with control_plane(endpoints) as cp:
        found = cp.registry.instances(
            name, healthy=healthy, tags=tag or (), zone=zone, meta=filters
        )
    if as_json:
        print_json(found.to_json())
        return
    table = Table("id", "address", "zone", "tags", "weight", "health", "reason")
    for i in found.instances:
        table.add_row(
            escape(i.id),
            f"{i.address}:{i.port}",
            escape(i.zone),
            escape(",".join(i.tags)),
            f"{i.weight:g}",
            _health(i.health.status.value),
            escape(i.health.reason),
        )
    out.print(table)
    note = " [yellow](protect threshold: unhealthy instances included)[/yellow]"
    out.print(
        f"{len(found.instances)} of {found.total} instance(s), {found.healthy} healthy, "
        f"at revision {found.revision}" + (note if found.protected else "")
    )


@app.command("register")
def register(
    name: str,
    instance_id: Annotated[str, typer.Option("--id", help="Instance id, unique in the service.")],
    address: Annotated[str, typer.Option("--address", help="Host or IP clients connect to.")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535)],
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    zone: Annotated[str, typer.Option("--zone")] = "",
    weight: Annotated[float, typer.Option("--weight", min=0)] = 1.0,
    meta: Annotated[list[str] | None, typer.Option("--meta", help="Metadata K=V.")] = None,
    version: Annotated[str, typer.Option("--version")] = "",
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="TTL check, e.g. 3s: heartbeat or it expires.")
    ] = None,
    http_check: Annotated[
        str | None, typer.Option("--http-check", help="HTTP check path, e.g. /healthz.")
    ] = None,
    tcp_check: Annotated[bool, typer.Option("--tcp-check", help="TCP connect check.")] = False,
    interval: Annotated[str, typer.Option("--interval", help="Check interval.")] = "10s",
    timeout: Annotated[str | None, typer.Option("--timeout", help="Check timeout.")] = None,
    fall: Annotated[int, typer.Option("--fall", min=1)] = 2,
    rise: Annotated[int, typer.Option("--rise", min=1)] = 1,
    deregister_after: Annotated[
        str | None, typer.Option("--deregister-after", help="Delete if critical this long.")
    ] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Register (or update) instance --id of service NAME."""
    if sum((ttl is not None, http_check is not None, tcp_check)) > 1:
        raise typer.BadParameter("give at most one of --ttl, --http-check, --tcp-check")
    body: dict[str, Any] = {
        "address": address,
        "port": port,
        "tags": tag or [],
        "zone": zone,
        "weight": weight,
        "version": version,
        "metadata": _pairs(meta),
    }
    if ttl is not None:
        body["check"] = {"type": "ttl", "ttl": ttl}
    elif http_check is not None or tcp_check:
        check: dict[str, Any] = {"type": "tcp" if tcp_check else "http", "interval": interval}
        if http_check is not None:
            check["path"] = http_check
        if timeout is not None:
            check["timeout"] = timeout
        check.update(fall=fall, rise=rise)
        body["check"] = check
    if deregister_after is not None:
        body["deregister_after"] = deregister_after
    with control_plane(endpoints) as cp:
        done = cp.registry.register(name, instance_id, **body)
    if as_json:
        print_json({**done.instance.to_json(), "revision": done.revision, "lease": done.lease})
        return
    lease = f"; heartbeat with `shoal lease keepalive {done.lease}`" if done.lease else ""
    out.print(f"registered {name}/{instance_id} (revision {done.revision}){lease}")


@app.command("deregister")
def deregister(
    name: str, instance_id: str, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False
) -> None:
    """Remove instance INSTANCE_ID of service NAME."""
    with control_plane(endpoints) as cp:
        revision = cp.registry.deregister(name, instance_id)
    if as_json:
        print_json({"revision": revision, "deleted": 1})
    else:
        out.print(f"deregistered {name}/{instance_id} (revision {revision})")


def _line(event: InstanceEvent) -> str:
    if event.type == "delete" or event.instance is None:
        return f"{event.revision} DELETE {event.id}"
    i = event.instance
    status = f"{i.health.status.value} ({i.health.reason})"
    return f"{event.revision} PUT {event.id} {i.address}:{i.port} {status}"


@app.command("watch")
def watch(
    name: str,
    start_revision: Annotated[
        int | None, typer.Option(min=1, help="Replay changes from this revision.")
    ] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print each change to service NAME's instances as it happens, until Ctrl-C.

    Follows the service across leader changes and reconnects (resuming by revision).
    """
    cp = ControlPlane(endpoints_of(endpoints), retry_budget=WATCH_RETRY_BUDGET)
    try:
        for event in cp.registry.watch(name, start_revision):
            if as_json:
                print_json(event.to_json())
            else:
                typer.echo(_line(event))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except ShoalError as error:
        raise fail(error.message) from None
    finally:
        cp.close()
