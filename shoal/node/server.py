"""`shoal server`: run one member and its HTTP API in one event loop until SIGTERM/SIGINT.

The member and uvicorn share the loop (uvloop when available), so API handlers hand
work to the Raft loop without threads. Start-up and shutdown are one lifespan
(lifespan.py): the member and the parts beside it (forwarding link, registry cache,
health checker) start before the server listens and stop after it has closed. SIGTERM
closes the listeners, finishes in-flight requests briefly, stops the parts and the
member (closing its WAL) and exits 0; SIGKILL loses nothing acknowledged, because
acknowledgement waits for the fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Mapping

import uvicorn
from starlette.types import ASGIApp

from ..security.guard import guard_api
from ..security.tls import uvicorn_options
from .api_errors import ApiError
from .app import build_app
from .fastpath import FastPath
from .front import ApiFront
from .http_protocol import CoalescingHttpToolsProtocol
from .lifespan import RunningMember, running_member
from .member import Member, MemberConfig
from .routing import LeaderLink
from .wal import StorageError

log = logging.getLogger("shoal.server")


async def serve(
    config: MemberConfig,
    *,
    on_ready: asyncio.Event | None = None,
    mounts: Mapping[str, ASGIApp] | None = None,
) -> None:
    """Serve one member until SIGTERM/SIGINT (or its Raft loop fails). `mounts` adds ASGI
    apps under paths of the member's HTTP API (e.g. the dashboard at `/ui`)."""
    async with running_member(config) as running:
        await _serve(running, on_ready, mounts)


def front(running: RunningMember, mounts: Mapping[str, ASGIApp] | None = None) -> ApiFront:
    """The member's whole ASGI application: the front over the fast path and FastAPI."""
    app = build_app(running, mounts=mounts)
    return ApiFront(app, running.member, FastPath(running.member, running.cache))


async def _serve(
    running: RunningMember,
    on_ready: asyncio.Event | None,
    mounts: Mapping[str, ASGIApp] | None,
) -> None:
    member, config = running.member, running.member.config
    server = uvicorn.Server(
        uvicorn.Config(
            guard_api(front(running, mounts), member, config.acl),  # ACLs: shoal.security
            host=config.client_host,
            port=config.client_port,
            log_level="warning",
            access_log=False,
            http=CoalescingHttpToolsProtocol.configured(
                header_timeout=config.header_timeout, max_connections=config.max_connections
            ),
            timeout_keep_alive=config.idle_timeout,  # type: ignore[arg-type]
            lifespan="off",
            timeout_graceful_shutdown=2,
            **uvicorn_options(config.tls),  # HTTPS when TLS is on (shoal.security)
        )
    )
    # We own SIGTERM/SIGINT: uvicorn would re-raise them after its shutdown and kill the
    # process before the member closes its WAL.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():
        serving.result()  # re-raise why uvicorn could not start (e.g. port in use)
        raise SystemExit(f"could not serve on {config.client_url}")
    print(
        f"shoal member {config.name} serving {config.client_url} "
        f"(peers on {config.peer_host}:{config.peer_port}, data in {config.data_dir})",
        flush=True,
    )
    if on_ready is not None:
        on_ready.set()
    advertising = asyncio.create_task(advertise(member, running.link))
    stopping = asyncio.create_task(stop.wait())
    assert member.task is not None
    try:
        await asyncio.wait({serving, stopping, member.task}, return_when=asyncio.FIRST_COMPLETED)
        failed = member.task.done() and not member.task.cancelled() and member.task.exception()
    finally:
        advertising.cancel()
        stopping.cancel()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
    if failed:
        # A member whose Raft loop died must not keep answering: exit so it is restarted.
        raise SystemExit(f"shoal: member loop failed: {failed!r}")


async def advertise(member: Member, link: LeaderLink) -> None:
    """Record this member's addresses in the store, through whichever member leads, and
    again whenever the record goes missing or stale (so `cluster status` can show it)."""
    cfg = member.config
    body = {"client_url": cfg.client_url, "peer_addr": f"{cfg.peer_host}:{cfg.peer_port}"}
    content = json.dumps(body).encode()
    while True:
        await asyncio.sleep(0.5)
        if member.member_url(member.name) == cfg.client_url:
            await asyncio.sleep(5)
            continue
        path = f"/api/v1/cluster/members/{member.name}/address"
        with contextlib.suppress(ApiError):  # no leader yet, or unreachable: try again
            await link.send("PUT", path, leader=member.leader, content=content)


def run(config: MemberConfig, mounts: Mapping[str, ASGIApp] | None = None) -> int:
    # A no-op when the caller set logging up (`shoal server` does: shoal.observe.logs).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The store holds many small long-lived objects; default GC thresholds walk them all
    # every few thousand allocations, which showed up as write-latency tails. Collect the
    # youngest generation far less often and keep start-up objects out of collections.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        import uvloop

        uvloop.run(serve(config, mounts=mounts))
    except StorageError as error:
        # Damaged durable state is an operator's problem to see, not a stack trace.
        print(f"shoal: {error}", file=sys.stderr)
        return 2
    return 0
