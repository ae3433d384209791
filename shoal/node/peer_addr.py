"""`host:port` peer addresses: the one parser of them, for the API and the command line.

A member dials whatever address is stored for a peer, so an address is checked where it
enters (`POST /api/v1/cluster/members`, `PUT .../address`, `shoal server --peer-addr`,
`--initial-cluster`): a value like `n/:7` or a non-ASCII host was once accepted and then
killed the peer link task. No I/O here.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def split_peer_addr(text: str) -> tuple[str, int]:
    """`host:port` -> `(host, port)`: an IPv4 address, a bracketed IPv6 address or an
    ASCII DNS name (RFC 1123 labels), and a port 1-65535; ValueError says what is wrong.

    Checked at the boundary because the peer link dials whatever is stored: a value
    like `n/:7` or a non-ASCII host used to be accepted and then killed the link task.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{text!r}: the port must be 1-65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from None
    labels = host.split(".")
    if not host.isascii() or len(host) > 253 or not all(_LABEL.match(x) for x in labels):
        raise ValueError(
            f"{text!r}: the host must be an IPv4 address, a bracketed IPv6 address or "
            "a DNS name of ASCII letters, digits and inner hyphens"
        )
    return host, int(port)


def format_peer_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["format_peer_addr", "split_peer_addr"]
