"""Errors of calls between services (part of the one tree rooted at `ShoalError`).

    ShoalError
    └── CallError            a call to another service got no response to return
        ├── NoInstance       nothing to send it to: no healthy instance, or every
        │                    instance refused by its circuit breaker
        ├── CallTimeout      the call's overall timeout passed
        └── CallFailed       every attempt failed at the connection (refused, reset,
                             timed out) and no retry was left or allowed

A response is never an error here, whatever its status: a 404 or a 503 after the retries
ran out is returned as the upstream's answer (`response.raise_for_status()` if you want
one). `service`, `reason`, `attempts` and `outcome` say what happened.
"""

from __future__ import annotations

from ..client import ShoalError

__all__ = ["CallError", "CallFailed", "CallTimeout", "NoInstance"]


class CallError(ShoalError):
    def __init__(
        self, message: str, *, service: str, reason: str, attempts: int, outcome: str | None
    ) -> None:
        super().__init__(message, code=reason, status=None)
        self.service, self.reason, self.attempts, self.outcome = service, reason, attempts, outcome


class NoInstance(CallError):
    """No instance could take the call."""


class CallTimeout(CallError):
    """The call's overall deadline passed before any attempt answered."""


class CallFailed(CallError):
    """Every attempt failed before an answer arrived."""
