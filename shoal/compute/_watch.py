"""Watches of control-plane prefixes, handed to a selector-driven loop (the shoal executor).

Each watch runs in a daemon thread (the client's watch is blocking) and posts
``(kind, (key, value))`` to an inbox, ``value`` ``None`` for a delete; a byte on a
socket pair wakes the loop, which registers ``waker`` with its selector and calls
``drain()`` when it is readable. Nothing here interprets what it carries.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Iterator

from shoal.client import ControlPlane

__all__ = ["PrefixWatches"]

Change = tuple[str, tuple[str, str | None]]  # kind, (key, value or None: deleted)


class PrefixWatches:
    """The watches one driver follows, and the inbox their changes wait in."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._inbox: queue.SimpleQueue[Change] = queue.SimpleQueue()
        self.waker, self._wake_w = socket.socketpair()
        self.waker.setblocking(False)
        self._wake_w.setblocking(False)
        self._planes: list[ControlPlane] = []

    def follow(self, prefix: str, start: int, kind: str) -> None:
        """Watch ``prefix`` from revision ``start``; its changes arrive tagged ``kind``."""
        plane = ControlPlane(self.server, timeout=5.0, retry_budget=30.0)
        self._planes.append(plane)

        def follow() -> None:
            with contextlib.suppress(Exception):  # closed by close(), or gave up
                for event in plane.watch(prefix=prefix, start_revision=start):
                    value = event.kv.value if event.type == "put" else None
                    self._post((kind, (event.kv.key, value)))

        threading.Thread(target=follow, name=f"shoal-watch-{kind}", daemon=True).start()

    def _post(self, item: Change) -> None:
        self._inbox.put(item)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def drain(self) -> Iterator[Change]:
        """The changes waiting (the waker is emptied first, so none is missed)."""
        with contextlib.suppress(OSError):
            while self.waker.recv(4096):
                pass
        while True:
            try:
                yield self._inbox.get_nowait()
            except queue.Empty:
                return

    def stop(self) -> None:
        """End every watch (their threads exit on their own)."""
        for plane in self._planes:
            with contextlib.suppress(Exception):
                plane.close()

    def close(self) -> None:
        self.stop()
        self.waker.close()
        self._wake_w.close()
