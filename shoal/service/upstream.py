"""`Upstream`: one called service's pool -- its live instances and what calls learn of them.

It joins the pieces a call plan (`shoal.resilience.call`) needs: the watched view of the
service (`shoal.client.ServiceView`), a balancer (`shoal.balance`), a circuit breaker per
instance, an outlier detector and the retry budget over the pool. Every view change
rebuilds the pool: the healthy instances (the protect threshold applies, as in server
discovery) that carry the policy's tags; instances that stay keep their balancer,
breaker and outlier state.

Calls from many threads (Flask) or one loop (FastAPI) share an upstream, so each method
takes the upstream's lock for the few microseconds of pure bookkeeping it does; no I/O
happens under it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

from ..balance import Balancer, Host, make_balancer
from ..client import ServiceSnapshot, ServiceView
from ..registry import Instance, InstanceFilter
from ..resilience import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    Outcome,
    OutlierDetector,
    RetryBudget,
)
from . import metrics
from .policy import ClientPolicy

__all__ = ["Endpoint", "Upstream"]

_SUCCESS = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    base_url: str  # http://host:port
    zone: str


class Upstream:
    """The pool of one called service; implements `shoal.resilience.call.Pool`."""

    def __init__(
        self,
        name: str,
        view: ServiceView,
        policy: ClientPolicy,
        *,
        local_zone: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.name, self.view, self.local_zone = name, view, local_zone
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._joined: dict[str, float] = {}
        self._first = True
        self._breakers: dict[str, CircuitBreaker] = {}
        # Hosts whose breaker is open, with the time it half-opens: until then they are
        # not offered to the balancer; after it, a pick asks the breaker for a probe.
        self._open: dict[str, float] = {}
        self._snapshot: ServiceSnapshot | None = None
        self.set_policy(policy)
        self._unsubscribe = view.subscribe(self._refresh)

    # -- configuration -----------------------------------------------------------------

    def set_policy(self, policy: ClientPolicy) -> None:
        """Apply a new policy (hot reload): fresh balancer, breakers, detector and budget."""
        zone = self.local_zone if policy.zone_aware and self.local_zone else None
        balancer = make_balancer(
            policy.balancer,
            self.rng,
            local_zone=zone,
            slow_start=policy.slow_start,
            **dict(policy.balancer_options),
        )
        call = policy.call_policy()
        with self._lock:
            self.policy, self.call_policy = policy, call
            self._balancer: Balancer = balancer
            self._outlier = OutlierDetector(call.outlier) if call.outlier else None
            self._budget = call.new_budget()
            self._breakers = {}
            self._open = {}
        if self._snapshot is not None:
            self._refresh(self._snapshot)

    def close(self) -> None:
        self._unsubscribe()

    # -- the pool from the view --------------------------------------------------------

    def _refresh(self, snapshot: ServiceSnapshot) -> None:
        self._snapshot = snapshot
        query = InstanceFilter(healthy=True, tags=self.policy.tags)
        chosen = snapshot.select(query).instances
        now = time.monotonic()
        with self._lock:
            endpoints: dict[str, Endpoint] = {}
            hosts: list[Host] = []
            for instance in chosen:
                since = self._joined.get(instance.id)
                if since is None:  # instances there from the start need no slow start
                    since = 0.0 if self._first else now
                endpoints[instance.id] = Endpoint(instance.id, _base_url(instance), instance.zone)
                hosts.append(
                    Host(id=instance.id, weight=instance.weight, zone=instance.zone, since=since)
                )
            self._joined = {h.id: h.since for h in hosts}
            self._first = False
            self._endpoints = endpoints
            self._balancer.update(hosts, now)
            if self._outlier is not None:
                self._outlier.update_hosts(endpoints.keys(), now)
            config = self.call_policy.breaker
            if config is not None:
                self._breakers = {
                    i: self._breakers.get(i) or self._new_breaker(i, config) for i in endpoints
                }
            self._open = {i: due for i, due in self._open.items() if i in endpoints}
        metrics.UPSTREAM_HOSTS.labels(self.name, "healthy").set(len(endpoints))

    # -- the Pool protocol -------------------------------------------------------------

    def request_started(self) -> RetryBudget:
        with self._lock:
            self._budget.request_started()
            return self._budget

    def request_finished(self, budget: RetryBudget) -> None:
        with self._lock:
            budget.request_finished()

    def try_start_retry(self, budget: RetryBudget) -> bool:
        with self._lock:
            return budget.try_start_retry()

    def retry_finished(self, budget: RetryBudget) -> None:
        with self._lock:
            budget.retry_finished()

    def choose(self, now: float, key: str | bytes | None, exclude: Collection[str]) -> str | None:
        with self._lock:
            # The usual call excludes nothing: no set is built for it.
            avoid: Collection[str] = exclude
            outlier = self._outlier
            if outlier is not None:
                ejected = outlier.ejected(now)
                if ejected and len(ejected) < len(self._endpoints):
                    # Every host ejected means "use them all" (Envoy's panic threshold).
                    avoid = {*avoid, *ejected}
            if self._open:
                refusing = {h for h, due in self._open.items() if due > now}
                if refusing:
                    avoid = {*avoid, *refusing}
            balancer, breakers = self._balancer, self._breakers
            for _ in range(len(self._endpoints) + 1):
                host = balancer.pick(now, key=key, exclude=avoid)
                if host is None:
                    return None
                host_id = host.id
                breaker = breakers.get(host_id)
                if breaker is None or breaker.allow(now):  # half-open: a probe's permit
                    balancer.started(host_id, now)
                    return host_id
                avoid = {*avoid, host_id}  # probes already in flight: try another
            return None

    def finished(self, host: str, now: float, outcome: Outcome, latency: float) -> None:
        with self._lock:
            self._balancer.finished(host, now, latency, outcome is _SUCCESS)
            breaker = self._breakers.get(host)
            if breaker is not None:
                breaker.record(now, outcome, latency)
            outlier = self._outlier
            if outlier is not None:
                outlier.record(host, now, outcome)

    def abandoned(self, host: str, now: float) -> None:
        with self._lock:
            self._balancer.finished(host, now, 0.0, True)
            breaker = self._breakers.get(host)
            if breaker is not None:
                breaker.release(now)

    def _new_breaker(self, host: str, config: BreakerConfig) -> CircuitBreaker:
        def moved(change: BreakerTransition) -> None:  # called under the lock
            if change.to_state is BreakerState.OPEN:
                self._open[host] = change.at + config.open_duration
            else:
                self._open.pop(host, None)

        return CircuitBreaker(config, on_transition=moved)

    # -- for the shells and for people -------------------------------------------------

    def endpoint(self, host: str) -> Endpoint | None:
        return self._endpoints.get(host)

    def describe(self) -> list[dict[str, object]]:
        """Each instance in the pool with what the client knows of it (for debugging)."""
        now = time.monotonic()
        with self._lock:
            ejected = self._outlier.ejected(now) if self._outlier is not None else frozenset()
            out: list[dict[str, object]] = []
            for host_id, endpoint in self._endpoints.items():
                load = self._balancer.load(host_id, now)
                breaker = self._breakers.get(host_id)
                out.append(
                    {
                        "id": host_id,
                        "url": endpoint.base_url,
                        "zone": endpoint.zone,
                        "outstanding": load.outstanding if load else 0,
                        "latency": load.latency if load else None,
                        "breaker": breaker.state(now).name.lower() if breaker else None,
                        "ejected": host_id in ejected,
                    }
                )
            return out


def _base_url(instance: Instance) -> str:
    host = instance.address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{instance.port}"
