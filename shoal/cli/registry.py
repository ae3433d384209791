"""`shoal services` and `shoal service show|register|deregister|watch`: the registry from
the command line.

Talks to `/api/v1/services/...` with httpx directly (the `shoal.client` facade has no
registry calls yet): each request tries the `--endpoints` in order until one answers;
followers forward writes to the leader themselves. Errors from the server become a red
line on stderr and exit status 1.

To mount (in `shoal/cli/main.py`):
    app.command("services")(registry.services)
    app.add_typer(registry.app, name="service")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from .common import DEFAULT_ENDPOINTS, Endpoints, Json, endpoints_of, fail, out, print_json

app = typer.Typer(
    help="Show, register, deregister and watch service instances.", no_args_is_help=True
)

TIMEOUT = 10.0


def _request(endpoints: str, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of the first endpoint that responds; `fail` on an error answer."""
    last: Exception | None = None
    for base in endpoints_of(endpoints):
        try:
            response = httpx.request(method, base + path, timeout=TIMEOUT, **kwargs)
        except httpx.TransportError as error:
            last = error
            continue
        return _json_or_fail(response)
    raise fail(f"no endpoint answered: {last}")


def _json_or_fail(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        raise fail(f"HTTP {response.status_code}: {response.text[:200]}") from None
    if response.status_code >= 400:
        message = data.get("message", response.text) if isinstance(data, dict) else data
        raise fail(str(message))
    return data


@contextmanager
def _stream(endpoints: str, path: str, params: dict[str, Any]) -> Iterator[httpx.Response]:
    """An open SSE response from the first endpoint that accepts the connection."""
    last: Exception | None = None
    for base in endpoints_of(endpoints):
        with ExitStack() as stack:
            try:
                response = stack.enter_context(
                    httpx.stream("GET", base + path, params=params, timeout=None)
                )
            except httpx.TransportError as error:
                last = error
                continue
            if response.status_code >= 400:
                response.read()
                _json_or_fail(response)
            yield response
            return
    raise fail(f"no endpoint answered: {last}")


def services(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """List the registered services with their instance and healthy counts."""
    data = _request(endpoints, "GET", "/api/v1/services")
    if as_json:
        print_json(data)
        return
    table = Table("service", "instances", "healthy")
    for s in data["services"]:
        table.add_row(escape(s["name"]), str(s["instances"]), str(s["healthy"]))
    out.print(table)
    out.print(f"{len(data['services'])} service(s) at revision {data['revision']}")


def _health(instance: dict[str, Any]) -> str:
    status = instance["health"]["status"]
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
    params: list[tuple[str, str]] = [("tag", t) for t in tag or []]
    if healthy:
        params.append(("healthy", "true"))
    if zone is not None:
        params.append(("zone", zone))
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {item!r}", param_hint="--meta")
        params.append((f"meta.{key}", value))
    data = _request(endpoints, "GET", f"/api/v1/services/{name}/instances", params=params)
    if as_json:
        print_json(data)
        return
    table = Table("id", "address", "zone", "tags", "weight", "health", "reason")
    for i in data["instances"]:
        table.add_row(
            escape(i["id"]),
            f"{i['address']}:{i['port']}",
            escape(i["zone"]),
            escape(",".join(i["tags"])),
            f"{i['weight']:g}",
            _health(i),
            escape(i["health"]["reason"]),
        )
    out.print(table)
    note = " [yellow](protect threshold: unhealthy instances included)[/yellow]"
    out.print(
        f"{len(data['instances'])} of {data['total']} instance(s), {data['healthy']} healthy, "
        f"at revision {data['revision']}" + (note if data["protected"] else "")
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
        "metadata": {},
    }
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {item!r}", param_hint="--meta")
        body["metadata"][key] = value
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
    data = _request(endpoints, "PUT", f"/api/v1/services/{name}/instances/{instance_id}", json=body)
    if as_json:
        print_json(data)
        return
    lease = f"; heartbeat with `shoal lease keepalive {data['lease']}`" if data.get("lease") else ""
    out.print(f"registered {name}/{instance_id} (revision {data['revision']}){lease}")


@app.command("deregister")
def deregister(
    name: str, instance_id: str, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False
) -> None:
    """Remove instance INSTANCE_ID of service NAME."""
    data = _request(endpoints, "DELETE", f"/api/v1/services/{name}/instances/{instance_id}")
    if as_json:
        print_json(data)
    else:
        out.print(f"deregistered {name}/{instance_id} (revision {data['revision']})")


def _line(event: dict[str, Any]) -> str:
    if event["type"] == "delete":
        return f"{event['revision']} DELETE {event.get('id')}"
    instance = event.get("instance") or {}
    health = instance.get("health", {})
    where = f"{instance.get('address')}:{instance.get('port')}"
    status = f"{health.get('status')} ({health.get('reason')})"
    return f"{event['revision']} PUT {event.get('id')} {where} {status}"


@app.command("watch")
def watch(
    name: str,
    start_revision: Annotated[
        int | None, typer.Option(min=1, help="Replay changes from this revision.")
    ] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print each change to service NAME's instances as it happens, until Ctrl-C."""
    params = {"start_revision": start_revision} if start_revision else {}
    try:
        with _stream(endpoints, f"/api/v1/services/{name}/watch", params) as response:
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if kind == "error":
                        raise fail(event.get("message", "watch closed"))
                    if as_json:
                        print_json(event)
                    else:
                        typer.echo(_line(event))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except httpx.HTTPError as error:
        raise fail(f"watch interrupted: {error}") from None
