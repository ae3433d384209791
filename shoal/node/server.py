"""`shoal server`: run one member and its HTTP API in one event loop until SIGTERM/SIGINT.

The member and uvicorn share the loop (uvloop when available), so API handlers hand
work to the Raft loop without threads. SIGTERM closes the listeners, finishes in-flight
requests briefly, stops the member (closing its WAL) and exits 0; SIGKILL loses nothing
acknowledged, because acknowledgement waits for the fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import uvicorn

from .api import create_app
from .member import Member, MemberConfig

log = logging.getLogger("shoal.server")


async def serve(config: MemberConfig, *, on_ready: asyncio.Event | None = None) -> None:
    member = Member(config)
    await member.start()
    app = create_app(member)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.client_host,
            port=config.client_port,
            log_level="warning",
            access_log=False,
            http="httptools",
            lifespan="off",
            timeout_graceful_shutdown=2,
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
        await member.stop()
        serving.result()  # re-raise why uvicorn could not start (e.g. port in use)
        raise SystemExit(f"could not serve on {config.client_url}")
    print(
        f"shoal member {config.name} serving {config.client_url} "
        f"(peers on {config.peer_host}:{config.peer_port}, data in {config.data_dir})",
        flush=True,
    )
    if on_ready is not None:
        on_ready.set()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    with contextlib.suppress(Exception):
        await serving
    await app.state.http.aclose()
    await member.stop()
    stopping.cancel()


def run(config: MemberConfig) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
    return 0
