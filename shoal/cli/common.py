"""What every client command of `shoal` shares: the `--endpoints` and `--json` options,
opening a `ControlPlane`, printing results, and turning errors into a red line on
stderr and exit status 1 (never a traceback)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console

from shoal.client import ControlPlane, ShoalError, parse_endpoints

DEFAULT_ENDPOINTS = "http://127.0.0.1:7700"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Endpoints = Annotated[
    str,
    typer.Option(
        "--endpoints",
        envvar="SHOAL_ENDPOINTS",
        help="Comma-separated URLs of control-plane members (env SHOAL_ENDPOINTS).",
        show_default=True,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the raw JSON result, for scripts.")]


def endpoints_of(text: str) -> tuple[str, ...]:
    try:
        return parse_endpoints(text or os.environ.get("SHOAL_ENDPOINTS") or DEFAULT_ENDPOINTS)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--endpoints") from None


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(1)


@contextmanager
def control_plane(endpoints: str) -> Iterator[ControlPlane]:
    """A client for the command's body; a `ShoalError` inside becomes exit status 1."""
    plane = ControlPlane(endpoints_of(endpoints))
    try:
        yield plane
    except ShoalError as error:
        raise fail(error.message) from None
    finally:
        plane.close()


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False))
