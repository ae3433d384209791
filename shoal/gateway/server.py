"""One gateway process: the listening socket, the route sources, the admin port, draining.

    options = GatewayOptions(port=8080, routes_file="routes.yaml", endpoints="http://...")
    raise SystemExit(run(options))          # blocks until SIGTERM / SIGINT

Theory of operation. `Gateway.start` connects to the control plane (one
`AsyncControlPlane` on the gateway's own uvloop loop), loads the route table from its
sources, compiles it (`shoal.gateway.runtime`), and listens. The route table comes from
a YAML/JSON file (`routes_file`, re-read when its modification time or size changes --
checked every second -- and on SIGHUP) and/or a config-center item (`routes_item`,
followed by a watch; once it has content it takes precedence over the file). A new
table that fails validation is refused whole and the last good one stays; the refusal
is logged and counted (`shoal_gateway_route_reloads_total{result="refused"}`).

Listening sockets are opened with SO_REUSEPORT, so `--workers N` processes
(`shoal.gateway.workers`) can each own a socket on the same port and the kernel spreads
connections over them. The admin port (optional) answers `/healthz`, `/metrics`,
`/routes` and `/upstreams` for this process.

Stopping (SIGTERM, SIGINT): stop accepting, let each connection finish the request it is
answering (idle keep-alive connections close at once, busy ones close after their
response), and exit once none is left or `drain_timeout` passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from ..client import AsyncControlPlane, ShoalError
from ..client.config import RETRY_MAX, RETRY_MIN, ConfigCursor
from ..config import ItemId
from ..observe import otel
from ..service.policy import ClientPolicy
from . import metrics
from .access import AccessLog
from .pool import ConnectionPool
from .proxy import ClientConnection, ProxyContext
from .routes import RouteError, RouteTable, parse_routes
from .runtime import Routing, UpstreamSet, compile_routing

__all__ = ["Gateway", "GatewayOptions", "run"]

log = logging.getLogger("shoal.gateway")

SWEEP_INTERVAL = 1.0
NO_TABLE = "none yet"  # the source of the empty table a gateway with only an item starts on


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayOptions:
    """How to run one gateway (every `shoal gateway` flag)."""

    port: int = 8080
    host: str = "0.0.0.0"
    routes_file: str | None = None
    routes_item: str | None = None  # "namespace/name" in the config center
    endpoints: str = "http://127.0.0.1:7700"
    admin_port: int | None = None
    admin_host: str = "127.0.0.1"
    access_log: str | None = "-"  # a path, "-" for stdout, None for none
    workers: int = 1
    drain_timeout: float = 10.0
    backlog: int = 4096
    seed: int | None = None  # for the balancers and retry jitter; None: from the OS
    # A ClientPolicy mapping as JSON (`--policy`): what every route's policy starts from,
    # under the table's defaults.policy (what `shoal up`'s `gateway.policy` sets).
    policy: str | None = None

    def __post_init__(self) -> None:
        if self.routes_file is None and self.routes_item is None:
            raise ValueError("give the route table: a routes file, a config item, or both")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.workers > 1 and self.port == 0:
            raise ValueError("several workers share one port: give --port, not 0")
        if self.routes_item is not None:
            try:
                ItemId.parse(self.routes_item)
            except ValueError as error:
                raise ValueError(f"routes item: {error}") from None
        self.base_policy()  # a bad --policy is refused before anything starts

    def base_policy(self) -> ClientPolicy | None:
        """`policy` parsed; ValueError naming the bad key."""
        if self.policy is None:
            return None
        try:
            return ClientPolicy.from_mapping(json.loads(self.policy))
        except ValueError as error:  # PolicyError and json's errors are ValueErrors
            raise ValueError(f"policy: {error}") from None


def read_table(path: str | Path, base: ClientPolicy | None = None) -> RouteTable:
    """The route table in a YAML or JSON file; RouteError (or OSError) if it is unusable."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RouteError(f"{path}: not valid YAML ({error})") from None
    return parse_routes(data, base)


class Gateway:
    """One gateway process's state; see the module docstring."""

    def __init__(self, options: GatewayOptions) -> None:
        self.options = options
        otel.configure("shoal-gateway")  # spans over OTLP, if installed and configured
        self.policy = options.base_policy()
        self.loop = asyncio.get_running_loop()
        self.rng = random.Random(options.seed)
        self.cp = AsyncControlPlane(options.endpoints, timeout=10.0, retry_budget=5.0)
        self.upstreams = UpstreamSet(self.cp, self.rng)
        self.pool = ConnectionPool(self.loop)
        self.access_log = (
            AccessLog(options.access_log, self.loop) if options.access_log is not None else None
        )
        self.ctx: ProxyContext | None = None
        self.port = options.port
        self.admin_port: int | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._file_stamp: tuple[float, int] | None = None
        self._item_table: RouteTable | None = None
        self._stopped = asyncio.Event()

    # -- the route table -----------------------------------------------------------------

    @property
    def has_routes(self) -> bool:
        """Whether a route table from a source is in force (not the empty start)."""
        return self.ctx is not None and self.ctx.routing.source != NO_TABLE

    @property
    def routing(self) -> Routing:
        assert self.ctx is not None
        return self.ctx.routing

    def _initial_table(self) -> tuple[RouteTable, str]:
        if self.options.routes_file is not None:
            self._file_stamp = self._stamp()
            return read_table(
                self.options.routes_file, self.policy
            ), f"file {self.options.routes_file}"
        # Only an item: start with nothing routed until its content arrives.
        return RouteTable(()), NO_TABLE

    def _apply(self, table: RouteTable, source: str) -> None:
        previous = self.ctx.routing if self.ctx is not None else None
        routing = compile_routing(table, self.upstreams, source, previous)
        if self.ctx is None:
            self.ctx = ProxyContext(
                self.loop, routing, self.upstreams, self.pool, self.access_log, self.rng
            )
        else:
            self.ctx.routing = routing  # one reference: requests see old or new, never a mix
        self.upstreams.retain(routing)
        log.info("routes from %s: %d route(s)", source, len(table.routes))

    def _stamp(self) -> tuple[float, int] | None:
        assert self.options.routes_file is not None
        try:
            st = os.stat(self.options.routes_file)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def reload_file(self, force: bool = False) -> bool:
        """Re-read the routes file if it changed (or `force`); True if a table was applied."""
        path = self.options.routes_file
        if path is None:
            return False
        stamp = self._stamp()
        if stamp is None or (stamp == self._file_stamp and not force):
            return False
        self._file_stamp = stamp
        if self._item_table is not None:
            return False  # the config item has precedence while it has content
        try:
            table = read_table(path, self.policy)
        except (RouteError, OSError, UnicodeDecodeError) as error:
            metrics.RELOADS.labels("file", "refused").inc()
            log.error("routes file %s refused, keeping the last table: %s", path, error)
            return False
        metrics.RELOADS.labels("file", "applied").inc()
        self._apply(table, f"file {path}")
        return True

    def apply_item_content(self, value: Any, version: int, deleted: bool) -> bool:
        item = self.options.routes_item
        if deleted:
            self._item_table = None
            log.warning("routes item %s was deleted", item)
            if self.options.routes_file is not None:
                self.reload_file(force=True)
            return False
        try:
            table = parse_routes(value, self.policy)
        except RouteError as error:
            metrics.RELOADS.labels("config", "refused").inc()
            log.error(
                "routes item %s version %s refused, keeping the last table: %s",
                item,
                version,
                error,
            )
            return False
        metrics.RELOADS.labels("config", "applied").inc()
        self._item_table = table
        self._apply(table, f"config {item} v{version}")
        return True

    async def _follow_item(self, item: str) -> None:
        cursor = ConfigCursor(ItemId.parse(item), {"service": "gateway"})
        delay = RETRY_MIN
        while True:
            try:
                async for update in self.cp.stream(cursor):
                    delay = RETRY_MIN
                    try:
                        value = update.value
                    except ValueError as error:
                        metrics.RELOADS.labels("config", "refused").inc()
                        log.error("routes item %s: content unreadable: %s", item, error)
                        continue
                    self.apply_item_content(value, update.version, update.deleted)
            except ShoalError as error:
                log.warning("watch of routes item %s: %s (keeping the last table)", item, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- running -----------------------------------------------------------------------

    async def start(self) -> None:
        table, source = self._initial_table()
        self._apply(table, source)
        assert self.ctx is not None
        ctx = self.ctx
        sock = _listen(self.options.host, self.options.port, self.options.backlog)
        self.port = sock.getsockname()[1]
        server = await self.loop.create_server(
            lambda: ClientConnection(ctx), sock=sock, backlog=self.options.backlog
        )
        self._servers.append(server)
        if self.options.admin_port is not None:
            from .admin import start_admin

            admin = await start_admin(self, self.options.admin_host, self.options.admin_port)
            self._servers.append(admin)
            self.admin_port = admin.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._tasks.append(self.loop.create_task(self._sweep(), name="gateway sweep"))
        if self.options.routes_item is not None:
            self._tasks.append(
                self.loop.create_task(self._follow_item(self.options.routes_item), name="routes")
            )
        log.info("gateway listening on %s:%d (pid %d)", self.options.host, self.port, os.getpid())
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's generations, so that a full collection (a pause on the request
        # path) walks only what requests allocate.
        gc.collect()
        gc.freeze()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            self.pool.sweep(now)
            assert self.ctx is not None
            for connection in list(self.ctx.connections):
                connection.sweep(now)
            self.reload_file()

    def stop(self) -> None:
        self._stopped.set()

    async def serve(self, on_started: Callable[[Gateway], object] | None = None) -> None:
        """Start, run until `stop()` (or a signal), drain and close."""
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            self.loop.add_signal_handler(signal.SIGHUP, lambda: self.reload_file(force=True))
        if on_started is not None:
            on_started(self)
        await self._stopped.wait()
        await self.drain()

    async def drain(self) -> None:
        ctx = self.ctx
        for server in self._servers:
            server.close()
        if ctx is not None:
            ctx.draining = True
            for connection in list(ctx.connections):
                if connection.active is None:
                    connection.close()
            deadline = time.monotonic() + self.options.drain_timeout
            while ctx.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for connection in list(ctx.connections):
                connection.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pool.close()
        await self.upstreams.close()
        await self.cp.aclose()
        if self.access_log is not None:
            self.access_log.close()
        log.info("gateway stopped")

    def status(self) -> dict[str, Any]:
        assert self.ctx is not None
        return {
            "pid": os.getpid(),
            "port": self.port,
            "connections": len(self.ctx.connections),
            "idle_upstream_connections": self.pool.idle_count(),
            "routes": self.ctx.routing.describe(),
        }


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def run(options: GatewayOptions, on_started: Callable[[Gateway], object] | None = None) -> int:
    """Run the gateway (or its workers) until stopped; the exit code."""
    if options.workers > 1:
        from .workers import run_workers

        return run_workers(options)
    import uvloop

    async def main() -> None:
        await Gateway(options).serve(on_started)

    try:
        uvloop.run(main())
    except RouteError as error:
        log.error("route table refused: %s", error)
        return 2
    except OSError as error:
        log.error("cannot start the gateway: %s", error)
        return 1
    return 0


def dumps(data: Any) -> bytes:
    return json.dumps(data, indent=2, default=str).encode() + b"\n"
