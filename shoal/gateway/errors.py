"""The answers the gateway gives itself: one JSON shape, one status per reason.

Every response the gateway makes up (rather than relays from a service) is

    HTTP/1.1 <status>
    content-type: application/json
    {"error": "<code>", "message": "<what limit or which upstream, in words>"}

so a client can branch on `error` and a person can read `message`. The table below is
the whole vocabulary; docs/gateway.md lists it for users.

Rules kept: a 400 (the client's bytes are not HTTP) and a 413 whose body was not read
close the connection, because the gateway cannot know where the next request starts;
every other answer keeps it alive when the client wants that. Nothing here does I/O.
"""

from __future__ import annotations

import json
from http import HTTPStatus

__all__ = ["ERRORS", "error_response", "status_line"]

# code -> HTTP status
ERRORS: dict[str, int] = {
    "bad_request": 400,  # malformed HTTP from the client
    "no_route": 404,  # no route matches the host and path
    "body_too_large": 413,  # the route's max_body
    "request_timeout": 408,  # the client stopped sending its body (idle_timeout)
    "expectation_failed": 417,  # an Expect other than 100-continue
    "rate_limited": 429,  # the route's rate_limit (with Retry-After)
    "upstream_failed": 502,  # the service's instance reset, refused or sent garbage
    "no_healthy_upstream": 503,  # no instance in the pool (or no view of the service yet)
    "circuit_open": 503,  # instances exist, every one's breaker refuses
    "upgrade_not_supported": 501,  # Upgrade / CONNECT: not proxied
    "upstream_timeout": 504,  # no answer within the attempt or overall timeout
    "shutting_down": 503,  # the gateway is draining
}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n` for any status (an unknown one gets no reason phrase)."""
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def error_response(
    code: str,
    message: str,
    *,
    keep_alive: bool,
    head_only: bool = False,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The whole response (head and body) for error `code`; HEAD gets the head only."""
    status = ERRORS[code]
    body = json.dumps({"error": code, "message": message}).encode() + b"\n"
    lines = [
        status_line(status),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
    ]
    lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in extra)
    lines.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)
