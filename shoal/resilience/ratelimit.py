"""Token-bucket rate limiting: one bucket, or one bucket per key with bounded memory.

Theory of operation
-------------------

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second; it starts
full. Taking ``n`` tokens succeeds only if ``n`` are there. So over any interval of
length ``t`` at most ``burst + rate * t`` tokens are granted, and a client idle for
``burst / rate`` seconds may burst again. Refill is computed from ``now`` when the bucket
is touched (no timer). resilience4j's RateLimiter instead refreshes a fixed number of
permits per period; a token bucket gives the same long-run rate without the cliff at
each period boundary.

`KeyedRateLimiter` keeps one bucket per key (client address, API key header, ...) in an
`OrderedDict` ordered by last use and holds at most ``max_keys``. When a new key needs room the
least recently used bucket is dropped. That loses nothing if the dropped bucket had
refilled (a full bucket is exactly what a new key gets) -- which is the case whenever its
key was idle for ``burst / rate`` seconds; only a flood of more than ``max_keys`` distinct
active keys makes eviction lossy, and then each evicted key at worst gets a fresh burst.
`retry_after` never creates a bucket: asking costs no memory.

Rules kept: ``now`` is seconds on the caller's monotonic clock; a ``now`` earlier than the
last one seen by a bucket adds no tokens (never a negative refill). ``n`` must be > 0;
``retry_after`` is ``inf`` for ``n > burst`` (it can never be granted).

Pure and not thread-safe: used from one event loop or under the caller's lock.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from ._validate import require_int, require_number


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; starts full."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        require_number("TokenBucket", "rate", rate, minimum=0.0, min_open=True)
        require_number("TokenBucket", "burst", burst, minimum=0.0, min_open=True)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def tokens(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def try_take(self, now: float, n: float = 1) -> bool:
        """Take ``n`` tokens if they are there; False (and nothing taken) otherwise."""
        if not n > 0:
            raise ValueError(f"TokenBucket.try_take n must be > 0, got {n!r}")
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def retry_after(self, now: float, n: float = 1) -> float:
        """Seconds until ``n`` tokens will be there (0 if they are; inf if never)."""
        if not n > 0:
            raise ValueError(f"TokenBucket.retry_after n must be > 0, got {n!r}")
        if n > self._burst:
            return math.inf
        self._refill(now)
        missing = n - self._tokens
        return missing / self._rate if missing > 0 else 0.0

    def full_at(self) -> float:
        """The instant the bucket will be full again (-inf if it was never touched)."""
        if self._last is None:
            return -math.inf
        return self._last + (self._burst - self._tokens) / self._rate

    def _refill(self, now: float) -> None:
        last = self._last
        if last is None:
            self._last = now
            return
        if now > last:
            tokens = self._tokens + (now - last) * self._rate
            self._tokens = tokens if tokens < self._burst else self._burst
            self._last = now


def _fresh_bucket(rate: float, burst: float) -> TokenBucket:
    """A full bucket with already-validated settings (no re-validation per new key)."""
    bucket = TokenBucket.__new__(TokenBucket)
    bucket._rate = rate
    bucket._burst = burst
    bucket._tokens = burst
    bucket._last = None
    return bucket


class KeyedRateLimiter:
    """One `TokenBucket` per key, at most ``max_keys`` of them (least recently used go)."""

    __slots__ = ("_buckets", "_burst", "_evicted", "_max_keys", "_rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        require_number("KeyedRateLimiter", "rate", rate, minimum=0.0, min_open=True)
        require_number("KeyedRateLimiter", "burst", burst, minimum=0.0, min_open=True)
        require_int("KeyedRateLimiter", "max_keys", max_keys, minimum=1)
        self._rate = float(rate)
        self._burst = float(burst)
        self._max_keys = max_keys
        # OrderedDict, not dict: popping a plain dict's oldest key repeatedly leaves
        # deleted slots at its front that every later scan for the oldest must skip.
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._evicted = 0

    @property
    def max_keys(self) -> int:
        return self._max_keys

    @property
    def evicted(self) -> int:
        """Buckets dropped to make room since the limiter was made."""
        return self._evicted

    def __len__(self) -> int:
        return len(self._buckets)

    def try_take(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket; False if it is empty."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)  # the least recently used
                self._evicted += 1
            bucket = buckets[key] = _fresh_bucket(self._rate, self._burst)
        else:
            buckets.move_to_end(key)
        return bucket.try_take(now)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may take a token again (0 for an unknown key)."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after(now)
