"""Shared helpers for the balancer tests: pools, seeded balancers, a fake-clock run."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import settings

from shoal.balance import Balancer, Host, make_balancer

# Properties are derandomized: the same examples on every run and machine, so a failure
# reproduces and the suite never flakes. Statistical checks use fixed RNG seeds too.
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=60)


def pool(n: int, *, weight: float = 1.0, zone: str = "", prefix: str = "h") -> list[Host]:
    return [Host(id=f"{prefix}{i}", weight=weight, zone=zone) for i in range(n)]


def balancer(
    policy: str, hosts: Sequence[Host] = (), *, seed: int = 7, now: float = 0.0, **kw: Any
) -> Balancer:
    b = make_balancer(policy, random.Random(seed), **kw)
    b.update(hosts, now)
    return b


def picks(b: Balancer, count: int, *, now: float = 0.0, **kw: Any) -> list[str]:
    """Ids of `count` picks (asserting each found a host)."""
    out = []
    for _ in range(count):
        host = b.pick(now, **kw)
        assert host is not None
        out.append(host.id)
    return out


def keyed_owners(b: Balancer, keys: Sequence[str], **kw: Any) -> dict[str, str]:
    owners = {}
    for key in keys:
        host = b.pick(0.0, key=key, **kw)
        assert host is not None
        owners[key] = host.id
    return owners


Latency = Callable[[str, float], tuple[float, bool]]


class Simulation:
    """Drive a balancer with a fake clock: a request every 1/rate seconds, each taking
    `latency(host_id, t)` seconds (and succeeding or not). Requests finish in time order
    before the next pick; in-flight requests carry over from one `run` to the next."""

    def __init__(self, b: Balancer, latency: Latency) -> None:
        self.balancer = b
        self.latency = latency
        self.now = 0.0
        self._inflight: list[tuple[float, int, str, float, bool]] = []
        self._seq = 0

    def run(self, *, rate: float, duration: float) -> Counter[str]:
        """Requests over the next `duration` seconds; how many each host got."""
        b = self.balancer
        counts: Counter[str] = Counter()
        step = 1.0 / rate
        end_at = self.now + duration
        inflight = self._inflight
        while self.now < end_at:
            t = self.now
            while inflight and inflight[0][0] <= t:
                end, _, host_id, began, ok = heapq.heappop(inflight)
                b.finished(host_id, end, end - began, ok)
            host = b.pick(t)
            assert host is not None
            b.started(host.id, t)
            counts[host.id] += 1
            took, ok = self.latency(host.id, t)
            self._seq += 1
            heapq.heappush(inflight, (t + took, self._seq, host.id, t, ok))
            self.now = t + step
        return counts


def run(b: Balancer, latency: Latency, *, rate: float, duration: float) -> Counter[str]:
    """One `Simulation` run from t = 0."""
    return Simulation(b, latency).run(rate=rate, duration=duration)
