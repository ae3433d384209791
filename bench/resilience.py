"""Nanoseconds per call of the resilience policies, next to a bare dict update.

These objects run on every request of the service SDK and of the gateway, so each must
cost a few microseconds at most. Every row is the best of ``--repeat`` timed loops of
``--calls`` calls (best, not mean: the machine is shared and noise only ever adds time),
with the loop's own cost included, as it would be in the attempt loop. The reference row
is ``counts[key] = counts.get(key, 0) + 1`` in the same kind of loop, so the ratio column
reads "this policy costs as much as N dict updates" and stays comparable across machines.

Rows:

* breaker allow+record: a closed breaker (window 20, min 10) admitting and recording a
  success, the hot path of every healthy call; and an open breaker refusing;
* outlier record: a success on one of 50 hosts; ``ejected()`` with nothing changed (must
  return the cached set, not build one);
* token bucket take: one bucket with ample rate; keyed limiter take over 1,000 keys in
  turn, and over 20,000 keys with a 10,000-key cap (every take evicts);
* retry budget and bulkhead: one acquire/release pair.

    .venv/bin/python -m bench.resilience             # ~10 s
    .venv/bin/python -m bench.resilience --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

from shoal.resilience import (
    BreakerConfig,
    Bulkhead,
    CircuitBreaker,
    KeyedRateLimiter,
    Outcome,
    OutlierDetector,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
)

Loop = Callable[[int], None]


def reference(calls: int) -> None:
    counts: dict[str, int] = {}
    key = "h7"
    for _ in range(calls):
        counts[key] = counts.get(key, 0) + 1


def breaker_closed(calls: int) -> None:
    b = CircuitBreaker(BreakerConfig())
    ok = Outcome.SUCCESS
    now = 0.0
    for _ in range(calls):
        now += 0.001
        if b.allow(now):
            b.record(now, ok, 0.002)


def breaker_open(calls: int) -> None:
    b = CircuitBreaker(BreakerConfig(window=10, minimum_calls=10, open_duration=1e12))
    for _ in range(10):
        b.allow(0.0)
        b.record(0.0, Outcome.FAILURE, 0.0)
    now = 0.0
    for _ in range(calls):
        now += 0.001
        if b.allow(now):
            raise AssertionError("an open breaker admitted a call")


def outlier_record(calls: int) -> None:
    d = OutlierDetector()
    hosts = [f"10.0.0.{i}:8080" for i in range(50)]
    d.update_hosts(hosts, 0.0)
    ok = Outcome.SUCCESS
    now = 0.0
    for i in range(calls):
        now += 0.001
        d.record(hosts[i % 50], now, ok)


def outlier_ejected(calls: int) -> None:
    d = OutlierDetector()
    hosts = [f"10.0.0.{i}:8080" for i in range(50)]
    d.update_hosts(hosts, 0.0)
    for _ in range(5):
        d.record(hosts[3], 0.0, Outcome.FAILURE)
    first = d.ejected(0.0)
    now = 0.0
    for _ in range(calls):
        now += 1e-9
        if d.ejected(now) is not first:
            raise AssertionError("ejected() built a new set with nothing changed")


def bucket_take(calls: int) -> None:
    b = TokenBucket(rate=1e9, burst=1e9)
    now = 0.0
    for _ in range(calls):
        now += 0.001
        b.try_take(now)


def keyed_take(keys: int, max_keys: int) -> Loop:
    def run(calls: int) -> None:
        limiter = KeyedRateLimiter(rate=1e6, burst=1e6, max_keys=max_keys)
        names = [f"198.51.{i // 256}.{i % 256}" for i in range(keys)]
        now = 0.0
        for i in range(calls):
            now += 0.001
            limiter.try_take(names[i % keys], now)

    return run


def budget_cycle(calls: int) -> None:
    b = RetryBudget()
    b.request_started()
    for _ in range(calls):
        if b.try_start_retry():
            b.retry_finished()


def bulkhead_cycle(calls: int) -> None:
    b = Bulkhead()
    for _ in range(calls):
        if b.try_acquire():
            b.release()


def backoff_draw(calls: int) -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    for i in range(calls):
        policy.backoff(1 + (i & 3), rng)


ROWS: list[tuple[str, Loop]] = [
    ("reference: dict update", reference),
    ("breaker allow+record (closed)", breaker_closed),
    ("breaker allow (open, refused)", breaker_open),
    ("outlier record (success)", outlier_record),
    ("outlier ejected() unchanged", outlier_ejected),
    ("token bucket try_take", bucket_take),
    ("keyed limiter take, 1k keys", keyed_take(1_000, 10_000)),
    ("keyed limiter take, evicting", keyed_take(20_000, 10_000)),
    ("retry budget start+finish", budget_cycle),
    ("bulkhead acquire+release", bulkhead_cycle),
    ("retry backoff draw", backoff_draw),
]


def best_ns_per_call(loop: Loop, calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        loop(calls)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resilience", description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timed loop")
    parser.add_argument("--repeat", type=int, default=5, help="timed loops per row")
    parser.add_argument("--quick", action="store_true", help="20,000 calls, 2 loops")
    args = parser.parse_args(argv)
    calls, repeat = (20_000, 2) if args.quick else (args.calls, args.repeat)

    results = [(name, best_ns_per_call(loop, calls, repeat)) for name, loop in ROWS]
    ref = results[0][1]
    print(f"shoal.resilience: best of {repeat} x {calls:,} calls, Python {sys.version.split()[0]}")
    header = f"{'operation':<32} {'ns/call':>9} {'x dict update':>14}"
    print(header)
    print("-" * len(header))
    for name, ns in results:
        print(f"{name:<32} {ns:>9.0f} {ns / ref:>14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
