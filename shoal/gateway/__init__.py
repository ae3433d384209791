"""`shoal.gateway`: the edge HTTP proxy in front of the services (docs/gateway.md).

    shoal gateway --port 8080 --routes routes.yaml --endpoints http://127.0.0.1:7700

    from shoal.gateway import GatewayOptions, run
    run(GatewayOptions(port=8080, routes_file="routes.yaml"))     # blocks; the exit code

| module | one job |
|---|---|
| `routes` | the route table: parse and validate (`parse_routes`), match (`RouteTable.match`) |
| `runtime` | a table compiled for the proxy (`Routing`); views and pools (`UpstreamSet`) |
| `proxy` | the hot path: client connections and exchanges on asyncio + httptools |
| `pool` | keep-alive upstream connections and their response parser |
| `errors` | the gateway's own answers: one JSON shape, one status per reason |
| `access`, `metrics` | JSON access log lines, Prometheus series per route and upstream |
| `server` | one process: sockets (SO_REUSEPORT), route sources and hot reload, draining |
| `admin` | the admin port: /healthz, /metrics, /routes, /upstreams |
| `workers` | `--workers N` processes on one port |
"""

from .routes import Route, RouteError, RouteTable, parse_routes
from .server import Gateway, GatewayOptions, read_table, run
from .workers import worker_command

__all__ = [
    "Gateway",
    "GatewayOptions",
    "Route",
    "RouteError",
    "RouteTable",
    "parse_routes",
    "read_table",
    "run",
    "worker_command",
]
