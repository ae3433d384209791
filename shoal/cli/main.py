"""Entry point of the ``shoal`` command (typer).

This module wires the command groups together and holds no logic of its own. Heavy
modules (the node, the simulator) are imported only by the commands that run them, so
``shoal --version`` stays fast and works even when optional parts are missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from shoal import __version__

from . import acl, call, certs, cluster, config, events, job, kv, lease, registry, worker
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
app.add_typer(certs.app, name="certs")
app.add_typer(acl.app, name="acl")
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
    tls_ca: Annotated[
        str | None, typer.Option("--tls-ca", help="CA to verify members by (env SHOAL_TLS_CA).")
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="Client certificate (env SHOAL_TLS_CERT).")
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option("--tls-key", help="Its private key (env SHOAL_TLS_KEY).")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="ACL token (env SHOAL_TOKEN).")
    ] = None,
) -> None:
    """shoal: microservices and distributed computing platform."""
    # Every client command (and every process it starts) reads these from the environment
    # (shoal.client.http), so one place sets them for all of them.
    for name, value in (
        ("SHOAL_TLS_CA", tls_ca),
        ("SHOAL_TLS_CERT", tls_cert),
        ("SHOAL_TLS_KEY", tls_key),
        ("SHOAL_TOKEN", token),
    ):
        if value is not None:
            os.environ[name] = value


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
