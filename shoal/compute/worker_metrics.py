"""The Prometheus metrics of a `shoal worker` process, and the endpoint that serves them.

Names follow shoal's one scheme (docs/observability.md): `shoal_worker_` prefix, units
in the name, `_total` on counters, bounded labels. A worker relays task batches without
unpickling them (see `worker.py`), so it counts frames and bytes, not tasks: the tasks
themselves are the driver's to count.

`serve_metrics` runs prometheus_client's own HTTP server on a daemon thread: the worker's
event loop relays bytes and must not also parse HTTP, and a scrape must still answer
while that loop is busy.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, start_http_server

__all__ = [
    "DRIVERS",
    "RESULT_BATCHES",
    "RESULT_BYTES",
    "RUN_BATCHES",
    "SLOTS",
    "SLOT_RESTARTS",
    "MetricsServer",
    "serve_metrics",
]

DRIVERS = Gauge("shoal_worker_drivers", "Driver connections this worker serves now.")
SLOTS = Gauge("shoal_worker_slot_processes", "Slot processes running now, over all drivers.")
RUN_BATCHES = Counter("shoal_worker_run_batches", "Batches of task attempts received from drivers.")
RESULT_BATCHES = Counter(
    "shoal_worker_result_batches", "Batches of task results relayed back to drivers."
)
RESULT_BYTES = Counter("shoal_worker_result_bytes", "Bytes of task results relayed to drivers.")
SLOT_RESTARTS = Counter(
    "shoal_worker_slot_restarts",
    "Slot processes that ended and were replaced, by why (crashed, or stopped on request).",
    ["reason"],
)


class MetricsServer:
    """A running metrics endpoint: `port` is the one really bound (ask for 0: any)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        self.port = int(server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(host: str, port: int) -> MetricsServer:
    """Serve `/metrics` (any path, as prometheus_client does) on `host:port`."""
    server, thread = start_http_server(port, addr=host)
    return MetricsServer(server, thread)
