"""Where this process really listens, and the address other processes should dial.

A service registers "with the address it really listens on" (issue 10), whatever started
it: `app.run()`, uvicorn, gunicorn, waitress. None of them tells the app its port before
serving, and some bind after the app is imported, so the SDK asks the operating system
instead: the TCP sockets in LISTEN state that this process holds (psutil reads them
from /proc on Linux and from the kernel elsewhere). A server bound to a wildcard address
(0.0.0.0, ::) is advertised at the local address that routes to the control plane -- the
interface the rest of the system can most likely reach.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

__all__ = ["Listener", "advertise_host", "listeners"]

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True, order=True)
class Listener:
    host: str
    port: int


def listeners(pid: int | None = None) -> list[Listener]:
    """The TCP addresses process `pid` (default: this one) listens on, sorted by port."""
    try:
        conns = psutil.Process(pid or os.getpid()).net_connections(kind="inet")
    except (psutil.Error, OSError):
        return []
    found = {
        Listener(c.laddr.ip, c.laddr.port)
        for c in conns
        if c.status == psutil.CONN_LISTEN and c.laddr and c.type == socket.SOCK_STREAM
    }
    return sorted(found, key=lambda item: (item.port, item.host))


def advertise_host(bound: str, control_plane_url: str) -> str:
    """The host to register for a server bound to `bound`.

    A specific address is itself. A wildcard is the local address of the route to the
    control plane (found by connecting a UDP socket, which sends nothing), or loopback
    when the control plane is on loopback or no route exists.
    """
    if bound not in _WILDCARDS:
        return bound
    target = urlsplit(control_plane_url).hostname or "127.0.0.1"
    try:
        if ipaddress.ip_address(target).is_loopback:
            return "127.0.0.1"
    except ValueError:
        pass  # a host name: resolve it below
    family = socket.AF_INET6 if bound == "::" else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            host: str = probe.getsockname()[0]
            return host
    except OSError:
        return "127.0.0.1"
