"""`shoal worker`: start a worker that runs tasks for `--executor shoal` jobs.

It registers itself in the control plane's registry (service ``shoal-workers``) and
stays there while it runs; see ``shoal.compute.worker``. To mount (in main.py):
    app.command("worker")(worker.worker)
"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DEFAULT_ENDPOINTS, fail


def worker(
    server: Annotated[
        str,
        typer.Option(
            "--server",
            "--endpoints",
            envvar="SHOAL_ENDPOINTS",
            help="Control-plane URL(s), comma-separated (env SHOAL_ENDPOINTS).",
        ),
    ] = DEFAULT_ENDPOINTS,
    slots: Annotated[
        int, typer.Option("--slots", "-s", min=1, help="Tasks run at once (processes).")
    ] = 1,
    resources: Annotated[
        str,
        typer.Option(
            "--resources",
            "-r",
            help="What the worker offers, e.g. cpu=2,memory=4e9,gpu=1 (default: cpu=SLOTS).",
        ),
    ] = "",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port.")] = 0,
    advertise: Annotated[
        str | None, typer.Option("--advertise", help="Address drivers should connect to.")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="Instance id in the registry (default host-pid).")
    ] = None,
    ttl: Annotated[
        int, typer.Option("--ttl", min=1, help="Lease TTL (s) if the keep-alive stream stalls.")
    ] = 10,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Port of the Prometheus /metrics endpoint on --host (0: any free port; "
            "it is in the registry's metadata as metrics_port).",
        ),
    ] = 0,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="Serve no metrics endpoint.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SHOAL_TOKEN",
            help="Accept only drivers that present this token (env SHOAL_TOKEN).",
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option("--tls-cert", help="PEM certificate: serve the worker port over TLS."),
    ] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="Its private key.")] = None,
    tls_ca: Annotated[
        str | None,
        typer.Option("--tls-ca", help="CA that signs drivers' certificates (and the workers')."),
    ] = None,
    client_cert_required: Annotated[
        bool,
        typer.Option(
            "--client-cert-required",
            help="Refuse drivers without a certificate signed by --tls-ca (mTLS).",
        ),
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Log lines as text or json.  [default: $SHOAL_LOG_FORMAT, else text]",
        ),
    ] = None,
) -> None:
    """Run a shoal worker until Ctrl-C or SIGTERM."""
    from .server import start_logging

    start_logging("worker", log_format)
    from shoal.client import parse_endpoints
    from shoal.compute import ComputeError
    from shoal.compute.worker import Worker, parse_resources, run_worker
    from shoal.compute.worker_tls import WorkerTls

    try:
        servers = parse_endpoints(server)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--server") from None
    try:
        offered = parse_resources(resources) if resources else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--resources") from None
    files = {"--tls-cert": tls_cert, "--tls-key": tls_key, "--tls-ca": tls_ca}
    tls = None
    if any(files.values()) or client_cert_required:
        missing = [flag for flag, value in files.items() if not value]
        if missing:
            raise typer.BadParameter(
                "TLS needs all of --tls-cert, --tls-key and --tls-ca; "
                f"missing {', '.join(missing)}",
                param_hint="--tls-cert",
            )
        assert tls_ca is not None
        tls = WorkerTls(tls_ca, tls_cert, tls_key, client_cert_required)
    try:
        run_worker(
            Worker(
                servers,
                slots=slots,
                resources=offered,
                host=host,
                port=port,
                advertise=advertise,
                worker_id=worker_id,
                ttl=ttl,
                metrics_port=None if no_metrics else metrics_port,
                token=token,
                tls=tls,
            )
        )
    except (ComputeError, OSError) as error:
        raise fail(str(error)) from None
