"""A tiny real HTTP service to health-check: its own process, 200 "ok" to every GET.

Its own process, so a test's polling cannot starve it of the GIL and fail its probes,
and so that SIGKILL makes probes see exactly what they would see in production
("connection refused").
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import httpx

from .processes import free_port, wait_for

__all__ = ["HTTP_SERVICE_SOURCE", "HttpService"]

HTTP_SERVICE_SOURCE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class HttpService:
    """Started (and answering) on construction; `stop` SIGKILLs it, `start` revives it on
    the same port. ``prefix`` goes before the interpreter (e.g. ``taskset -c 1``)."""

    def __init__(self, port: int | None = None, *, prefix: Sequence[str] = ()) -> None:
        self.port = port if port is not None else free_port()
        self.prefix = list(prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        command = [*self.prefix, sys.executable, "-c", HTTP_SERVICE_SOURCE, str(self.port)]
        self.proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        wait_for(
            lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200,
            timeout,
            what=f"the http service on port {self.port}",
        )

    def stop(self) -> None:
        """SIGKILL: probes now get 'connection refused'."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def __enter__(self) -> HttpService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
