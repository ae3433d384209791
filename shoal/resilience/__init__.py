"""Resilience policies for the data plane: pure, cheap, and driven by the caller's clock.

Each policy is a small object with one job; the SDK's and the gateway's attempt loop
composes them (that composition lives in ``call.py``, written by the service SDK):

| module | one job |
|---|---|
| `outcome` | `Outcome`, what one attempt came to; `classify_status` |
| `timeouts` | `Timeouts`: per-attempt and overall deadlines |
| `retry` | `RetryPolicy` (which outcomes, idempotency, full-jitter backoff), `RetryBudget` |
| `breaker` | `CircuitBreaker`: closed / open / half-open on failure and slow-call rate |
| `outlier` | `OutlierDetector`: consecutive-failure ejection with growing, decaying times |
| `bulkhead` | `Bulkhead`: a cap on calls in flight |
| `ratelimit` | `TokenBucket`, `KeyedRateLimiter` (one bucket per key, bounded memory) |

Rules every module keeps: no I/O, no clock, no threads, no global randomness -- ``now`` is
float seconds on the caller's monotonic clock and randomness is a `random.Random` passed
in. Configs are frozen, slotted dataclasses that raise ValueError naming the field and
its allowed range. None of these objects is thread-safe: use each from one event loop or
under the caller's lock. Defaults and why they depart from Envoy and resilience4j:
docs/resilience.md.
"""

from .breaker import BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker
from .bulkhead import Bulkhead
from .outcome import FAILURE_OUTCOMES, Outcome, classify_status
from .outlier import OutlierConfig, OutlierDetector
from .ratelimit import KeyedRateLimiter, TokenBucket
from .retry import DEFAULT_RETRY_ON, DEFAULT_RETRY_STATUSES, RetryBudget, RetryPolicy
from .timeouts import Timeouts

__all__ = [
    "DEFAULT_RETRY_ON",
    "DEFAULT_RETRY_STATUSES",
    "FAILURE_OUTCOMES",
    "BreakerConfig",
    "BreakerState",
    "BreakerTransition",
    "Bulkhead",
    "CircuitBreaker",
    "KeyedRateLimiter",
    "Outcome",
    "OutlierConfig",
    "OutlierDetector",
    "RetryBudget",
    "RetryPolicy",
    "Timeouts",
    "TokenBucket",
    "classify_status",
]
