"""`--workers N`: N gateway processes on one port, each with its own views and pools.

Theory of operation. The parent binds nothing: it starts N children (`python -m
shoal.gateway ... --workers 1`), each of which opens its own listening socket with
SO_REUSEPORT on the same port, so the kernel spreads new connections over them and no
process ever waits on another (nginx's `reuseport`). Each worker runs its own control
plane watches, connection pools, breakers and rate limiters: limits are per worker
(a route's rate limit admits up to N times its rate in total). Worker i's admin port,
if one is asked for, is `admin_port + i`.

A worker that exits without being asked is started again after a backoff that doubles
from 0.5 s to 10 s (and is reset by a run longer than 30 s). SIGTERM / SIGINT to the
parent is passed to every worker, each drains, and the parent exits once all have.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import GatewayOptions

__all__ = ["run_workers", "worker_command"]

log = logging.getLogger("shoal.gateway")

BACKOFF_MIN, BACKOFF_MAX, HEALTHY_RUN = 0.5, 10.0, 30.0


def worker_command(options: GatewayOptions, index: int) -> list[str]:
    """The command line of worker `index` (0-based)."""
    cmd = [sys.executable, "-m", "shoal.gateway", "--port", str(options.port)]
    cmd += ["--host", options.host, "--endpoints", options.endpoints, "--workers", "1"]
    if options.routes_file is not None:
        cmd += ["--routes", options.routes_file]
    if options.routes_item is not None:
        cmd += ["--routes-item", options.routes_item]
    if options.admin_port is not None:
        cmd += ["--admin-port", str(options.admin_port + index), "--admin-host", options.admin_host]
    cmd += ["--access-log", options.access_log if options.access_log is not None else "off"]
    cmd += ["--drain-timeout", str(options.drain_timeout)]
    if options.seed is not None:
        cmd += ["--seed", str(options.seed + index)]
    if options.policy is not None:
        cmd += ["--policy", options.policy]
    return cmd


def run_workers(options: GatewayOptions) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs: list[subprocess.Popen[bytes] | None] = [None] * options.workers
    started = [0.0] * options.workers
    backoff = [BACKOFF_MIN] * options.workers
    due = [0.0] * options.workers
    try:
        while not stopping:
            now = time.monotonic()
            for i, proc in enumerate(procs):
                if proc is not None and proc.poll() is None:
                    continue
                if proc is not None:  # it died: schedule a restart
                    log.error("gateway worker %d exited with %s", i, proc.returncode)
                    ran = now - started[i]
                    doubled = min(backoff[i] * 2, BACKOFF_MAX)
                    backoff[i] = BACKOFF_MIN if ran > HEALTHY_RUN else doubled
                    due[i] = now + backoff[i]
                    procs[i] = None
                if now >= due[i]:
                    procs[i] = subprocess.Popen(worker_command(options, i))
                    started[i] = now
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + options.drain_timeout + 5
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0
