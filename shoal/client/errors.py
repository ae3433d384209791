"""The one exception hierarchy of `shoal.client`.

    ShoalError                 anything the control plane (or the way to it) said no to
    ├── BadRequest             a 4xx: the request was at fault; `message` is the server's
    │   └── NotFound           404: no such key, lease or member
    ├── Compacted              410: the revision asked for is older than the kept history
    │   └── WatchCompacted     ... when opening a watch; re-list, then watch again
    ├── WatchClosed            the server ended a watch (e.g. a slow watcher was cut off)
    └── Unavailable            no member answered in time (connection failures, 503s)

Foreign exceptions (httpx's) are translated into these in `shoal.client.http`, the only
module that imports httpx; nothing here does I/O.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Compacted",
    "NotFound",
    "ShoalError",
    "Unavailable",
    "WatchClosed",
    "WatchCompacted",
]


class ShoalError(Exception):
    """Base of every error raised by the client. `code` is the server's error code."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class BadRequest(ShoalError):
    """The server refused the request as malformed or impossible (a 4xx)."""


class NotFound(BadRequest):
    """The key, lease or member does not exist (404)."""


class Compacted(ShoalError):
    """The requested revision was compacted away; `compact_revision` is the oldest kept."""

    def __init__(
        self, message: str, *, compact_revision: int | None = None, code: str | None = None
    ):
        super().__init__(message, code=code or "compacted", status=410)
        self.compact_revision = compact_revision


class WatchCompacted(Compacted):
    """A watch asked to start before the kept history: re-list, then watch from there."""


class WatchClosed(ShoalError):
    """The server closed the watch stream with an error event."""


class Unavailable(ShoalError):
    """No member could serve the request before the deadline.

    `request_sent` is False when the request surely never reached a server (connection
    refused), so even a non-idempotent request may be retried.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_sent: bool = True,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.request_sent = request_sent
