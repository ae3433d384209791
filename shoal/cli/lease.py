"""`shoal lease grant|keepalive|revoke|ttl`: leases from the command line."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from .common import DEFAULT_ENDPOINTS, Endpoints, Json, control_plane, out, print_json

app = typer.Typer(help="Grant, renew and revoke leases.", no_args_is_help=True)

LeaseId = Annotated[int, typer.Argument(min=1, metavar="ID", help="The lease id.")]


@app.command("grant")
def grant(
    ttl: Annotated[int, typer.Argument(min=1, help="Seconds the lease lives without renewal.")],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Grant a lease of TTL seconds and print its id."""
    with control_plane(endpoints) as plane:
        lease_id = plane.grant(ttl)
    if as_json:
        print_json({"id": lease_id, "ttl": ttl})
    else:
        out.print(f"lease {lease_id} granted with TTL {ttl}s")


@app.command("keepalive")
def keepalive(
    lease_id: LeaseId,
    once: Annotated[bool, typer.Option("--once", help="Renew once and exit.")] = False,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Renew lease ID every TTL/3 seconds until Ctrl-C (or once, with --once)."""
    try:
        with control_plane(endpoints) as plane:
            while True:
                ttl = plane.keepalive(lease_id)
                if as_json:
                    print_json({"id": lease_id, "ttl": ttl})
                else:
                    out.print(f"lease {lease_id} kept alive, TTL {ttl}s")
                if once:
                    return
                time.sleep(max(ttl / 3, 0.2))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("revoke")
def revoke(
    lease_id: LeaseId, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False
) -> None:
    """Revoke lease ID, deleting every key attached to it."""
    with control_plane(endpoints) as plane:
        deleted = plane.revoke(lease_id)
    if as_json:
        print_json({"id": lease_id, "deleted": list(deleted)})
    else:
        out.print(f"lease {lease_id} revoked ({len(deleted)} key(s) deleted)")


@app.command("ttl")
def ttl(lease_id: LeaseId, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Show the granted and remaining TTL of lease ID and its keys."""
    with control_plane(endpoints) as plane:
        info = plane.time_to_live(lease_id)
    if as_json:
        print_json(info)
        return
    keys = ", ".join(info.keys) or "none"
    out.print(
        f"lease {info.id}: granted TTL {info.granted_ttl}s, "
        f"remaining {info.remaining:.1f}s, keys: {keys}",
        markup=False,
    )
