"""A bulkhead: a cap on calls in flight, resilience4j's semaphore bulkhead without waiting.

A caller takes a place with `try_acquire` before a call and gives it back with `release`
when the call is over, whatever its outcome. When all places are taken the call is
refused at once (resilience4j's default ``maxWaitDuration`` is 0 too): a caller that
queued would only hold its own resources longer while the upstream is saturated, and an
async caller that wants to wait can do so with its own deadline.

Rules kept: ``0 <= in_use <= max_concurrent``; a `release` without a matching acquire is a
caller bug and raises RuntimeError instead of silently raising the cap.

Pure and not thread-safe: used from one event loop or under the caller's lock.
"""

from __future__ import annotations

from ._validate import require_int


class Bulkhead:
    """At most ``max_concurrent`` calls at once (default 25, as resilience4j)."""

    __slots__ = ("_in_use", "_max_concurrent", "_rejected")

    def __init__(self, max_concurrent: int = 25) -> None:
        require_int("Bulkhead", "max_concurrent", max_concurrent, minimum=1)
        self._max_concurrent = max_concurrent
        self._in_use = 0
        self._rejected = 0

    @property
    def max_concurrent(self) -> int:
        return self._max_concurrent

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def available(self) -> int:
        return self._max_concurrent - self._in_use

    @property
    def rejected(self) -> int:
        """Calls refused since the bulkhead was made."""
        return self._rejected

    def try_acquire(self) -> bool:
        if self._in_use >= self._max_concurrent:
            self._rejected += 1
            return False
        self._in_use += 1
        return True

    def release(self) -> None:
        if self._in_use == 0:
            raise RuntimeError("Bulkhead.release without a successful try_acquire")
        self._in_use -= 1
