"""`shoal certs init`: a local CA and member/client certificates for development.

All the work is `shoal.security.certs.init_certs`; this module parses flags and says
where each file went and how to use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import out

app = typer.Typer(help="Certificates for TLS and mTLS (development CA).", no_args_is_help=True)


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the PEM files go.", show_default=True)
    ] = Path("./.shoal-certs"),
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="Another name or IP the member certificate is valid for (repeatable); "
            "localhost, 127.0.0.1 and ::1 are always included.",
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Validity of the leaf certificates.")] = 365,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing CA instead of reusing it.")
    ] = False,
) -> None:
    """Make (or reuse) a CA in --dir and sign a member and a client certificate with it."""
    from shoal.security.certs import init_certs

    try:
        issued = init_certs(directory, hosts=tuple(host or ()), days=days, force=force)
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot write certificates in {directory}: {error}") from None
    out.print(f"CA            {issued.ca}  (key {issued.ca_key}: keep it private)")
    out.print(f"member cert   {issued.member_cert}  key {issued.member_key}")
    out.print(f"client cert   {issued.client_cert}  key {issued.client_key}")
    out.print(
        f"\nshoal server --tls-cert {issued.member_cert} --tls-key {issued.member_key} "
        f"--tls-ca {issued.ca}\n"
        f"export SHOAL_TLS_CA={issued.ca} SHOAL_TLS_CERT={issued.client_cert} "
        f"SHOAL_TLS_KEY={issued.client_key}"
    )
