"""`shoal call SERVICE METHOD PATH [--data JSON]`: one request through discovery and the
SDK's balancing, for debugging: which instance answered, how fast, and what it said."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from .common import DEFAULT_ENDPOINTS, Endpoints, endpoints_of, err, fail

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def call(
    service: Annotated[str, typer.Argument(help="The service to call, by name.")],
    method: Annotated[str, typer.Argument(help="GET, POST, PUT, PATCH, DELETE, ...")],
    path: Annotated[str, typer.Argument(help="The path, e.g. /users/1.")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="A JSON body to send.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="NAME: VALUE (repeatable).")
    ] = None,
    balancer: Annotated[
        str | None, typer.Option("--balancer", help="The balancing policy to pick with.")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds, retries included.")] = 10.0,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
) -> None:
    """Send one request to SERVICE the way a service would, and print the answer."""
    from shoal.service import CallError, ClientPolicy, PolicyError, ServiceClient

    verb = method.upper()
    if verb not in METHODS:
        raise typer.BadParameter(f"{method!r} is not one of {', '.join(METHODS)}")
    body = None
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError as error:
            raise typer.BadParameter(f"not JSON: {error}", param_hint="--data") from None
    headers = {}
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME: VALUE, got {item!r}", param_hint="--header")
        headers[name.strip()] = value.strip()
    try:
        policy = ClientPolicy(balancer=balancer) if balancer else ClientPolicy()
    except PolicyError as error:
        raise typer.BadParameter(str(error), param_hint="--balancer") from None
    urls = ",".join(endpoints_of(endpoints))
    with ServiceClient(service, endpoints=urls, policy=policy) as client:
        started = time.perf_counter()
        try:
            response = client.request(verb, path, json=body, headers=headers, timeout=timeout)
        except CallError as error:
            raise fail(error.message) from None
        took = (time.perf_counter() - started) * 1000
        where = f"{response.url.host}:{response.url.port}"
        answered = next(
            (i["id"] for i in client.instances() if str(i["url"]).endswith(where)), where
        )
    status = f"{response.status_code} {response.reason_phrase}"
    err.print(f"{status} from {answered} ({where}) in {took:.1f} ms")
    typer.echo(response.text, nl=not response.text.endswith("\n"))
    if response.status_code >= 400:
        raise typer.Exit(1)
