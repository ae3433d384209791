"""`shoal cluster status|add|promote|remove|transfer`: membership from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .common import DEFAULT_ENDPOINTS, Endpoints, Json, control_plane, out, print_json
from .server import parse_addr

app = typer.Typer(help="Inspect and change the control-plane membership.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(metavar="NAME", help="A member's name.")]


@app.command("status")
def status(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Show the members, the leader, the term and the commit and applied indexes."""
    with control_plane(endpoints) as plane:
        info = plane.cluster_status()
    if as_json:
        print_json(info)
        return
    out.print(
        f"leader {info.leader or '(none)'}  term {info.term}  commit {info.commit_index}  "
        f"applied {info.applied_index}  revision {info.revision}  (answered by {info.member})",
        markup=False,
    )
    table = Table("name", "role", "leader", "client URL", "peer addr", "match index")
    for member in info.members:
        table.add_row(
            escape(member.name),
            "voter" if member.voter else "learner",
            "*" if member.leader else "",
            escape(member.client_url or "?"),
            escape(member.peer_addr or "?"),
            "" if member.match_index is None else str(member.match_index),
        )
    out.print(table)


@app.command("add")
def add(
    name: Name,
    peer_addr: Annotated[
        str, typer.Argument(metavar="PEER_ADDR", help="host:port of its peer port.")
    ],
    voter: Annotated[
        bool, typer.Option("--voter", help="Add as a voter at once (default: a learner).")
    ] = False,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Add member NAME, reachable by its peers at PEER_ADDR."""
    host, port = parse_addr(peer_addr, "PEER_ADDR")
    with control_plane(endpoints) as plane:
        index = plane.add_member(name, f"{host}:{port}", learner=not voter)
    if as_json:
        print_json({"index": index, "name": name, "learner": not voter})
    else:
        out.print(f"added {name} as a {'voter' if voter else 'learner'} (log index {index})")


@app.command("promote")
def promote(name: Name, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Make learner NAME a voter."""
    with control_plane(endpoints) as plane:
        index = plane.promote(name)
    if as_json:
        print_json({"index": index, "name": name})
    else:
        out.print(f"promoted {name} to voter (log index {index})")


@app.command("remove")
def remove(name: Name, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Remove member NAME from the cluster."""
    with control_plane(endpoints) as plane:
        index = plane.remove_member(name)
    if as_json:
        print_json({"index": index, "name": name})
    else:
        out.print(f"removed {name} (log index {index})")


@app.command("transfer")
def transfer(name: Name, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Hand leadership to member NAME."""
    with control_plane(endpoints) as plane:
        target = plane.transfer(name)
    if as_json:
        print_json({"transferring_to": target})
    else:
        out.print(f"transferring leadership to {target}")
