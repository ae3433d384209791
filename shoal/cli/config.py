"""`shoal config put|get|delete|history|diff|rollback|watch|list|beta`: the config center.

Talks to `/api/v1/config/...` through `ControlPlane.config` (the client tries each
endpoint in turn, and sends a write that lost a race again: the server re-plans it from
the new state); an API error becomes a red line on stderr and exit status 1.
"""

from __future__ import annotations

import datetime
import getpass
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shoal.client import ControlPlane, ShoalError, watch_config
from shoal.config import ConfigError, ItemId, parse_pairs

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
    help="Publish, read, roll back and gray-release configuration.", no_args_is_help=True
)
beta_app = typer.Typer(help="Gray release: content for matching instances only.")
app.add_typer(beta_app, name="beta", no_args_is_help=True)

WATCH_RETRY_BUDGET = 60.0  # seconds a watch keeps trying to reconnect
_SUFFIXES = {
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".properties": "properties",
}

Item = Annotated[str, typer.Argument(help="NAMESPACE/NAME, e.g. prod/articles.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="json|yaml|toml|properties|text (default: from the suffix)."),
]
Message = Annotated[str | None, typer.Option("--message", "-m", help="Why this change.")]
ExpectVersion = Annotated[
    int | None,
    typer.Option(
        "--expect-version",
        min=0,
        help="Only if this is the current version (0: only if the item is new).",
    ),
]
Labels = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="An instance label k=v (repeatable).")
]


def _item(text: str) -> ItemId:
    try:
        return ItemId.parse(text)
    except ConfigError as error:
        raise typer.BadParameter(error.message, param_hint="NAMESPACE/NAME") from None


def _labels(pairs: list[str] | None) -> dict[str, str]:
    try:
        return parse_pairs(pairs or [])
    except ConfigError as error:
        raise typer.BadParameter(error.message, param_hint="--label") from None


def _read(file: str) -> str:
    try:
        return sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"cannot read {file}: {error}") from None


def _format_of(file: str, given: str | None) -> str:
    return given or _SUFFIXES.get(Path(file).suffix.lower(), "text")


def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _done(as_json: bool, result: dict[str, Any], text: str) -> None:
    if as_json:
        print_json(result)
    else:
        out.print(text)


@app.command("put")
def put(
    item: Item,
    file: Annotated[str, typer.Argument(help="The content; - reads stdin.")],
    fmt: FormatOpt = None,
    message: Message = None,
    expect_version: ExpectVersion = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Publish FILE as the next version of NAMESPACE/NAME (validated first)."""
    target = _item(item)
    content = _read(file)
    with control_plane(endpoints) as cp:
        result = cp.config.publish(
            target,
            content,
            _format_of(file, fmt),
            author=_author(),
            message=message,
            expect_version=expect_version,
        )
    _done(as_json, result, f"published {target} version {result['version']}")


@app.command("get")
def get(
    item: Item,
    version: Annotated[int | None, typer.Option(min=1, help="A past version.")] = None,
    label: Labels = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print the content an instance with these labels gets (or VERSION's)."""
    target = _item(item)
    labels = _labels(label)
    with control_plane(endpoints) as cp:
        if version is not None:
            result = cp.config.version(target, version)
        else:
            result = cp.config.get(target, labels)
    if as_json:
        print_json(result)
    else:
        typer.echo(result["content"], nl=not result["content"].endswith("\n"))


@app.command("list")
def list_items(
    namespace: Annotated[str | None, typer.Argument(help="Only this namespace.")] = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """List config items with their current version."""
    with control_plane(endpoints) as cp:
        result = cp.config.list(namespace)
    if as_json:
        print_json(result)
        return
    table = Table("item", "version", "format", "updated", "beta")
    for i in result["items"]:
        table.add_row(
            escape(f"{i['namespace']}/{i['name']}"),
            str(i["version"]),
            i["format"],
            _when(i["updated"]),
            "yes" if i["beta"] else "",
        )
    out.print(table)


@app.command("history")
def history(item: Item, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """Every version of NAMESPACE/NAME, newest first."""
    target = _item(item)
    with control_plane(endpoints) as cp:
        result = cp.config.history(target)
    if as_json:
        print_json(result)
        return
    table = Table("version", "time", "author", "kind", "format", "sha256", "message")
    for v in result["versions"]:
        kind = f"rollback of {v['source']}" if v["kind"] == "rollback" else v["kind"]
        table.add_row(
            str(v["number"]),
            _when(v["time"]),
            escape(v["author"]),
            kind,
            v["format"],
            v["sha256"][:12],
            escape(v["message"]),
        )
    out.print(table)
    if result.get("beta"):
        beta = result["beta"]
        selector = ",".join(f"{k}={v}" for k, v in beta["selector"].items())
        out.print(f"beta running for {escape(selector)} (by {escape(beta['author'])})")


@app.command("diff")
def diff(
    item: Item,
    a: Annotated[int, typer.Argument(min=1, help="From this version.")],
    b: Annotated[int, typer.Argument(min=1, help="To this version.")],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """A unified diff between versions A and B."""
    target = _item(item)
    with control_plane(endpoints) as cp:
        result = cp.config.diff(target, a, b)
    if as_json:
        print_json(result)
    else:
        typer.echo(result["diff"], nl=False)


@app.command("rollback")
def rollback(
    item: Item,
    version: Annotated[int, typer.Argument(min=1, help="The version whose content returns.")],
    message: Message = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Publish VERSION's content again, as a new version."""
    target = _item(item)
    with control_plane(endpoints) as cp:
        result = cp.config.rollback(target, version, author=_author(), message=message)
    _done(as_json, result, f"rolled {target} back to {version} as version {result['version']}")


@app.command("delete")
def delete(
    item: Item,
    expect_version: ExpectVersion = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Remove NAMESPACE/NAME with its history and beta (watchers are told)."""
    target = _item(item)
    with control_plane(endpoints) as cp:
        result = cp.config.delete(target, expect_version=expect_version)
    _done(as_json, result, f"deleted {target}")


@app.command("watch")
def watch(
    item: Item,
    label: Labels = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Print the content an instance with these labels gets, now and on every change.

    Follows the item across leader changes and reconnects (resuming by revision).
    """
    target = _item(item)
    labels = _labels(label)
    cp = ControlPlane(endpoints_of(endpoints), retry_budget=WATCH_RETRY_BUDGET)
    try:
        for update in watch_config(cp, str(target), labels):
            if as_json:
                print_json({"event": "deleted" if update.deleted else "config", **asdict(update)})
            elif update.deleted:
                out.print(f"# {target} deleted")
            else:
                beta = " (beta)" if update.beta else ""
                out.print(f"[bold]# {target} version {update.version}{beta}[/bold]", markup=True)
                typer.echo(update.content, nl=not update.content.endswith("\n"))
    except ShoalError as error:
        raise fail(error.message) from None
    finally:
        cp.close()


@beta_app.command("put")
def beta_put(
    item: Item,
    file: Annotated[str, typer.Argument(help="The beta content; - reads stdin.")],
    selector: Annotated[
        list[str], typer.Option("--selector", "-s", help="A label k=v instances must have.")
    ],
    fmt: FormatOpt = None,
    message: Message = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Deliver FILE only to instances whose labels match every --selector."""
    target = _item(item)
    try:
        chosen = parse_pairs(selector, "selector")
    except ConfigError as error:
        raise typer.BadParameter(error.message, param_hint="--selector") from None
    content = _read(file)
    with control_plane(endpoints) as cp:
        result = cp.config.put_beta(
            target,
            content,
            chosen,
            format=fmt or (_SUFFIXES.get(Path(file).suffix.lower()) if file != "-" else None),
            author=_author(),
            message=message,
        )
    _done(as_json, result, f"beta of {target} running for {chosen}")


@beta_app.command("promote")
def beta_promote(
    item: Item,
    message: Message = None,
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Make the beta the next version for everyone."""
    target = _item(item)
    with control_plane(endpoints) as cp:
        result = cp.config.promote_beta(target, author=_author(), message=message)
    _done(as_json, result, f"promoted the beta of {target} to version {result['version']}")


@beta_app.command("drop")
def beta_drop(item: Item, endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """End the beta; every instance gets the current version again."""
    target = _item(item)
    with control_plane(endpoints) as cp:
        result = cp.config.drop_beta(target)
    _done(as_json, result, f"dropped the beta of {target}")
