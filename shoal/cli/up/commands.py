"""The typer commands `shoal up`, `shoal scale`, `shoal restart` and `shoal ps`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..common import fail, out, print_json
from .control import request
from .manifest import ManifestError, load_manifest

ManifestArg = Annotated[Path, typer.Option("--manifest", "-f", help="The application's manifest.")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The application's data directory (default: .shoal/ beside the manifest).",
    ),
]
DEFAULT_MANIFEST = Path("shoal.yaml")


def _load(path: Path):  # type: ignore[no-untyped-def]
    try:
        return load_manifest(path)
    except ManifestError as error:
        raise fail(f"{error.path}: " + "\n  ".join(["", *error.problems]).lstrip()) from None


def up(
    manifest: Annotated[
        Path, typer.Argument(help="The application's manifest.")
    ] = DEFAULT_MANIFEST,
    endpoints: Annotated[
        str | None,
        typer.Option("--endpoints", help="Use this running control plane instead of one's own."),
    ] = None,
    control_port: Annotated[
        int | None,
        typer.Option("--control-port", min=1, max=65534, help="Client port of its control plane."),
    ] = None,
    data_dir: DataDir = None,
    gateway_port: Annotated[
        int | None,
        typer.Option("--gateway-port", min=1, max=65535, help="Port of its gateway."),
    ] = None,
) -> None:
    """Run the application in MANIFEST: a control plane, then every service with its
    replicas and the gateway, supervised (restarted when they crash), logs shown; Ctrl-C
    stops it all."""
    from .supervisor import Supervisor

    spec, root = _load(manifest)
    if control_port is not None:
        spec = spec.model_copy(
            update={"control_plane": spec.control_plane.model_copy(update={"port": control_port})}
        )
    if gateway_port is not None:
        if spec.gateway is None:
            raise fail(f"--gateway-port: {manifest} has no gateway: section")
        spec = spec.model_copy(
            update={"gateway": spec.gateway.model_copy(update={"port": gateway_port})}
        )
    supervisor = Supervisor(spec, root, endpoints=endpoints, data_dir=data_dir)
    raise typer.Exit(asyncio.run(supervisor.run()))


def _ask(
    manifest: Path, message: dict[str, object], data_dir: Path | None = None
) -> dict[str, object]:
    _, root = _load(manifest)
    path = (data_dir or root / ".shoal") / "up.sock"
    try:
        answer = request(path, message)
    except (FileNotFoundError, ConnectionRefusedError):
        raise fail(f"no `shoal up` is running for {manifest} (no {path})") from None
    except OSError as error:
        raise fail(f"cannot talk to `shoal up` at {path}: {error}") from None
    if not answer.get("ok"):
        raise fail(str(answer.get("error")))
    return answer


def scale(
    target: Annotated[str, typer.Argument(help="SERVICE=N, e.g. users=3.")],
    manifest: ManifestArg = DEFAULT_MANIFEST,
    data_dir: DataDir = None,
) -> None:
    """Run N replicas of SERVICE in the running `shoal up` (waits until they are up)."""
    service, sep, count = target.partition("=")
    if not sep or not service or not count.isdigit():
        raise typer.BadParameter(f"expected SERVICE=N, got {target!r}", param_hint="TARGET")
    answer = _ask(manifest, {"op": "scale", "service": service, "replicas": int(count)}, data_dir)
    out.print(f"{service}: {', '.join(answer['replicas']) or 'no replicas'}")  # type: ignore[arg-type]


def restart(
    service: Annotated[str, typer.Argument(help="The service to restart.")],
    manifest: ManifestArg = DEFAULT_MANIFEST,
    data_dir: DataDir = None,
) -> None:
    """Rolling restart of SERVICE: one replica at a time, each replaced by a new one
    that is up before the old one stops."""
    answer = _ask(manifest, {"op": "restart", "service": service}, data_dir)
    out.print(f"{service} restarted: {', '.join(answer['replicas'])}")  # type: ignore[arg-type]


def ps(
    manifest: ManifestArg = DEFAULT_MANIFEST,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """The replicas of the running `shoal up`, with their ports and states."""
    answer = _ask(manifest, {"op": "ps"}, data_dir)
    if as_json:
        print_json(answer)
        return
    table = Table("replica", "port", "state", "restarts", "pid")
    for replicas in answer["services"].values():  # type: ignore[attr-defined]
        for r in replicas:
            port = str(r["port"]) + (f" (admin {r['admin_port']})" if "admin_port" in r else "")
            table.add_row(r["name"], port, r["state"], str(r["restarts"]), str(r["pid"]))
    out.print(table)
    out.print(f"{answer['name']}: control plane at {answer['endpoints']}")
    if answer.get("gateway"):
        out.print(f"{answer['name']}: gateway at {answer['gateway']}")
