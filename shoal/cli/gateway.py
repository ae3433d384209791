"""`shoal gateway`: run the edge HTTP proxy (see docs/gateway.md and `shoal.gateway`).

    shoal gateway --port 8080 --routes routes.yaml --endpoints http://127.0.0.1:7700
    shoal gateway --port 8080 --routes-item gateway/routes --workers 2 --admin-port 9901

To mount (in main.py):
    from .gateway import gateway
    app.command("gateway")(gateway)
"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DEFAULT_ENDPOINTS


def gateway(
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Port to serve.")
    ] = 8080,
    routes: Annotated[
        str | None,
        typer.Option("--routes", help="Route table file (YAML or JSON); reloaded on change."),
    ] = None,
    routes_item: Annotated[
        str | None,
        typer.Option(
            "--routes-item",
            help="Config-center item (namespace/name) holding the route table; hot-reloaded, "
            "and preferred to --routes once it has content.",
        ),
    ] = None,
    endpoints: Annotated[
        str,
        typer.Option(
            "--endpoints",
            envvar="SHOAL_ENDPOINTS",
            help="Control-plane URL(s), comma-separated (env SHOAL_ENDPOINTS).",
        ),
    ] = DEFAULT_ENDPOINTS,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Processes sharing the port.")
    ] = 1,
    admin_port: Annotated[
        int | None,
        typer.Option(
            "--admin-port", help="/healthz, /metrics, /routes, /upstreams (worker i: +i)."
        ),
    ] = None,
    admin_host: Annotated[str, typer.Option("--admin-host")] = "127.0.0.1",
    access_log: Annotated[
        str, typer.Option("--access-log", help="A path, - for stdout, off for none.")
    ] = "-",
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", min=0, help="Seconds to finish requests on stop.")
    ] = 10.0,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help='A client policy as JSON ({"timeout": "2s"}): what every route starts '
            "from, under the table's defaults.policy.",
        ),
    ] = None,
) -> None:
    """Run the gateway until Ctrl-C or SIGTERM (then drain)."""
    import logging
    import sys

    from shoal.gateway import GatewayOptions, run

    try:
        options = GatewayOptions(
            port=port,
            host=host,
            routes_file=routes,
            routes_item=routes_item,
            endpoints=endpoints,
            workers=workers,
            admin_port=admin_port,
            admin_host=admin_host,
            access_log=None if access_log == "off" else access_log,
            drain_timeout=drain_timeout,
            policy=policy,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    code = run(options)
    if code:
        raise typer.Exit(code)
