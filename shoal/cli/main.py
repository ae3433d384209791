"""Entry point of the ``shoal`` command (typer).

This module wires the command groups together and holds no logic of its own. Heavy
modules (the node, the simulator) are imported only by the commands that run them, so
``shoal --version`` stays fast and works even when optional parts are missing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from shoal import __version__

from . import call, cluster, config, events, job, kv, lease, registry, worker
from .gateway import gateway
from .server import server
from .up import commands as up

app = typer.Typer(
    name="shoal",
    help="shoal: microservices and distributed computing platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(kv.app, name="kv")
app.add_typer(lease.app, name="lease")
app.add_typer(cluster.app, name="cluster")
app.add_typer(job.app, name="job")
app.add_typer(config.app, name="config")
app.add_typer(events.app, name="events")
app.command("services")(registry.services)
app.add_typer(registry.app, name="service")
app.command("server")(server)
app.command("worker")(worker.worker)
app.command("jobs")(job.jobs)
app.command("call")(call.call)
app.command("gateway")(gateway)
app.command("up")(up.up)
app.command("scale")(up.scale)
app.command("restart")(up.restart)
app.command("ps")(up.ps)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shoal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """shoal: microservices and distributed computing platform."""


@app.command(
    "sim",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def sim(ctx: typer.Context) -> None:
    """Run the deterministic Raft simulator (see 'shoal sim --help')."""
    from shoal.raft.sim.__main__ import main as sim_main

    raise typer.Exit(sim_main(list(ctx.args)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shoal`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="shoal")
    except SystemExit as exit_:
        code = exit_.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
