"""A real service process for tests: any command (uvicorn, `python app.py`), on a loopback
port of its own, with the control plane's endpoints in its environment.

    app = AppProcess(["uvicorn", "myapp:app", "--port", "{port}"], endpoints=server.url)
    app.wait_healthy()        # /healthz answers (the SDK serves it)
    app.wait_registered()     # ... and names its instance: it is in the registry
    app.terminate()           # SIGTERM: the graceful stop; kill() for SIGKILL

`{port}` in the command is replaced by the process's port. Every process is killed at
interpreter exit at the latest, even when a test fails half-way.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from .processes import free_port, wait_for

__all__ = ["AppProcess", "uvicorn_command"]

_running: set[subprocess.Popen[bytes]] = set()


def _kill_all() -> None:
    for proc in list(_running):
        if proc.poll() is None:
            proc.kill()


atexit.register(_kill_all)


def uvicorn_command(app: str, *extra: str) -> list[str]:
    """`python -m uvicorn APP --host 127.0.0.1 --port {port}` with this interpreter."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", *extra]


class AppProcess:
    """A service process; see the module docstring."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        endpoints: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log: Path | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.env = {**os.environ, "SHOAL_ENDPOINTS": endpoints, **(env or {})}
        self.log, self.cwd = log, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        out = open(self.log, "ab") if self.log is not None else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy
        _running.add(self.proc)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> AppProcess:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited with {self.proc.returncode}")
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200

        wait_for(healthy, timeout, what=f"{self.command[:3]} on port {self.port}")
        return self

    def wait_registered(self, timeout: float = 30.0) -> AppProcess:
        """Healthy and registered: `/healthz` names the instance id (an SDK service
        serves before its registration lands, so callers may not see it yet)."""
        self.wait_healthy(timeout)

        def registered() -> bool:
            return httpx.get(self.url + "/healthz", timeout=1).json().get("instance") is not None

        wait_for(registered, timeout, what=f"registration of the app on port {self.port}")
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        _running.discard(self.proc)
        return code

    def kill(self) -> None:
        """SIGKILL, and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
            _running.discard(self.proc)

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
