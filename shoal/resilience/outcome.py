"""What one attempt came to, in the five words every resilience policy here understands.

The caller (the SDK's or the gateway's attempt loop) turns whatever happened on the wire
into one `Outcome`; the policies never see exceptions, sockets or responses. The split
matters because the policies treat the cases differently:

* ``CONNECT_FAILURE`` never reached the upstream, so even a non-idempotent request may be
  retried, and outlier detection counts it as a *local-origin* failure;
* ``RESET`` lost the connection after the request was (maybe) sent: the upstream may have
  acted on it, so only idempotent requests are retried;
* ``TIMEOUT`` had no answer in time: the same caveat as ``RESET``;
* ``FAILURE`` is an answer, a server error (5xx);
* ``SUCCESS`` is any answer the caller accepts, by default 1xx-4xx: a 404 or a 409 is the
  upstream working correctly, and must not open a breaker or eject a host.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from enum import Enum


class Outcome(Enum):
    """What one attempt came to."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CONNECT_FAILURE = "connect_failure"
    RESET = "reset"


# Every outcome but SUCCESS: what a circuit breaker counts as failed unless told otherwise.
FAILURE_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.FAILURE, Outcome.TIMEOUT, Outcome.CONNECT_FAILURE, Outcome.RESET}
)


def classify_status(status: int) -> Outcome:
    """``FAILURE`` for a 5xx status, ``SUCCESS`` for any other valid HTTP status (100-599).

    A status outside 100-599 is not HTTP and raises ValueError rather than being guessed.
    """
    if 500 <= status <= 599:
        return Outcome.FAILURE
    if 100 <= status <= 499:
        return Outcome.SUCCESS
    raise ValueError(f"status must be an HTTP status in [100, 599], got {status!r}")
