"""`shoal acl bootstrap|token|policy`: ACL tokens and policies (docs/security.md).

Each command is one call of `/api/v1/acl/...` through the client (so `--endpoints`,
`SHOAL_TOKEN` and the TLS options work as for every other command). A token's secret is
printed once, when it is made: the cluster keeps only its hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from shoal.client.protocol import Call, Request

from .common import DEFAULT_ENDPOINTS, Endpoints, Json, control_plane, fail, out, print_json

app = typer.Typer(
    help="ACL tokens and policies (members started with --acl).", no_args_is_help=True
)
token_app = typer.Typer(help="Create, list and delete tokens.", no_args_is_help=True)
policy_app = typer.Typer(help="Write, list and delete policies.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(policy_app, name="policy")

ACL = "/api/v1/acl"


def _call(endpoints: str, method: str, path: str, body: Any = None) -> Any:
    with control_plane(endpoints) as plane:
        # Writes are not repeated on another member after a failure: a bootstrap or a token
        # made twice would print a secret nobody kept.
        call: Call[Any] = Call(
            Request(method, ACL + path, json=body), lambda d: d, idempotent=method == "GET"
        )
        return plane.call(call)


@app.command("bootstrap")
def bootstrap(
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Bootstrap with the secret in this file (32-256 characters of "
            "A-Z a-z 0-9 . _ ~ + / = -) instead of a random one, e.g. one your "
            "deployment already holds (as Consul's `acl bootstrap <path>`).",
        ),
    ] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Make the first (management) token; works once per cluster. Keep what it prints."""
    body: dict[str, str] = {}
    if token_file is not None:
        try:
            body["token"] = token_file.read_text().strip()  # a trailing newline is not part
        except OSError as error:
            raise fail(f"cannot read the token file: {error}") from error
    answer = _call(endpoints, "POST", "/bootstrap", body)
    if as_json:
        print_json(answer)
        return
    out.print(f"accessor  {answer['accessor']}")
    out.print(f"token     {answer['token']}")
    out.print("(shown once: export SHOAL_TOKEN=<token>)")


@token_app.command("create")
def token_create(
    policy: Annotated[list[str], typer.Option("--policy", help="A policy name (repeatable).")],
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Make a token with these policies and print its secret (once)."""
    answer = _call(endpoints, "POST", "/tokens", {"policies": policy, "description": description})
    if as_json:
        print_json(answer)
        return
    out.print(f"accessor  {answer['accessor']}")
    out.print(f"token     {answer['token']}")


@token_app.command("list")
def token_list(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Tokens by accessor (never their secrets)."""
    answer = _call(endpoints, "GET", "/tokens")
    if as_json:
        print_json(answer)
        return
    for token in answer["tokens"]:
        out.print(f"{token['accessor']}  {','.join(token['policies'])}  {token['description']}")


@token_app.command("delete")
def token_delete(
    accessor: Annotated[str, typer.Argument(help="The token's accessor.")],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
) -> None:
    """Delete a token: it stops working at once."""
    _call(endpoints, "DELETE", f"/tokens/{accessor}")
    out.print(f"deleted token {accessor}")


@token_app.command("self")
def token_self(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """The token in use (SHOAL_TOKEN / --token): its accessor and policies."""
    answer = _call(endpoints, "GET", "/token/self")
    if as_json:
        print_json(answer)
    else:
        out.print(f"{answer['accessor']}  {','.join(answer['policies'])}")


@policy_app.command("set")
def policy_set(
    name: Annotated[str, typer.Argument(help="The policy's name.")],
    rules: Annotated[
        Path,
        typer.Argument(
            help='JSON file: {"rules": [{"key": "app/", "access": "write"}, ...]} (or - for stdin)'
        ),
    ],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
) -> None:
    """Create or replace a policy."""
    try:
        text = typer.get_text_stream("stdin").read() if str(rules) == "-" else rules.read_text()
        document = json.loads(text)
    except (OSError, ValueError) as error:
        raise fail(f"cannot read a JSON policy from {rules}: {error}") from None
    answer = _call(endpoints, "PUT", f"/policies/{name}", document)
    out.print(f"policy {answer['name']} written (revision {answer['revision']})")


@policy_app.command("list")
def policy_list(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Every policy with its rules."""
    answer = _call(endpoints, "GET", "/policies")
    if as_json:
        print_json(answer)
        return
    for policy in answer["policies"]:
        rules = json.dumps(policy["rules"]) if policy["rules"] is not None else "(built in)"
        out.print(f"{policy['name']}  {rules}")


@policy_app.command("delete")
def policy_delete(
    name: Annotated[str, typer.Argument(help="The policy's name.")],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
) -> None:
    """Delete a policy: tokens that name it lose what it granted."""
    _call(endpoints, "DELETE", f"/policies/{name}")
    out.print(f"deleted policy {name}")
