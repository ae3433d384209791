"""Schemathesis hooks for fuzzing a member (loaded through SCHEMATHESIS_HOOKS).

The fuzzer may generate any host for a registration's `address` or a member's
`peer_addr`, and the member would then dial it: a health check probes the instance, the
peer link connects to a learner. Every such address the member would accept is replaced
by a loopback one, so a fuzz run never sends traffic off this machine. Values it would
refuse are left as generated: a negative case must stay invalid, or the fuzzer would
rightly report "invalid data accepted".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import schemathesis

from shoal.node.peer_addr import split_peer_addr


def _peer_addr_ok(value: str) -> bool:
    try:
        split_peer_addr(value)
    except ValueError:
        return False
    return bool(re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$", value))


def _address_ok(value: str) -> bool:  # the instance model's rule for an address
    return 0 < len(value) <= 255 and not any(c.isspace() for c in value)


LOOPBACK: dict[str, tuple[Callable[[str], bool], str]] = {
    "address": (_address_ok, "127.0.0.1"),
    "peer_addr": (_peer_addr_ok, "127.0.0.1:9"),
    "client_url": (lambda v: bool(re.match(r"^https?://", v)), "http://127.0.0.1:9"),
}


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict):
        for name, (accepted, loopback) in LOOPBACK.items():
            value = body.get(name)
            if isinstance(value, str) and accepted(value):
                body[name] = loopback
    return body
