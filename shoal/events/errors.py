"""The one exception hierarchy of `shoal.events`.

    EventsError                  anything shoal.events refuses or cannot do
    ├── InvalidEvent             the caller's input is wrong; nothing was published (4xx)
    │   ├── PayloadTooLarge      payload, headers or key over a documented limit (413)
    │   └── InvalidName          a malformed topic, group, message id or header (400)
    ├── UnknownGroup             a group that was never created on that topic (404)
    └── BackendUnavailable       the backend did not answer in time (503)

Every error carries `code` and `status`, so an HTTP front or the CLI can answer
`{"error": code, "message": text}` without a table of its own. Foreign exceptions (the
control-plane client's, redis', nats') are translated where those libraries are used.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "EventsError",
    "InvalidEvent",
    "InvalidName",
    "PayloadTooLarge",
    "UnknownGroup",
]


class EventsError(Exception):
    code = "events_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidEvent(EventsError):
    code = "invalid_request"
    status = 400


class PayloadTooLarge(InvalidEvent):
    code = "limit_exceeded"
    status = 413


class InvalidName(InvalidEvent):
    code = "invalid_request"
    status = 400


class UnknownGroup(EventsError):
    code = "unknown_group"
    status = 404


class BackendUnavailable(EventsError):
    code = "unavailable"
    status = 503
