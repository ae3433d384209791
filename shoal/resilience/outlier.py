"""Outlier detection: Envoy's consecutive-failure ejection over a pool of hosts, sans timer.

Theory of operation
-------------------

Each host has two counters, as in Envoy with ``split_external_local_origin_errors``:

* *consecutive failures* -- answers that were server errors (``FAILURE``) and connections
  lost after sending (``RESET``): the host was reached and misbehaved;
* *consecutive local failures* -- ``TIMEOUT`` and ``CONNECT_FAILURE``: the host could not be
  reached or did not answer.

A ``SUCCESS`` clears both; an answer or a reset (the host was reachable) clears the local
counter. When a counter reaches its threshold the host is ejected, unless that would put
more than ``max_ejection_percent`` of the pool out -- but, as in Envoy, one host may always
be ejected. A refused ejection is counted in `overflow`; the counter is kept, so the host
is ejected on its next failure once there is room.

An ejection lasts ``base_ejection * multiplier`` (capped at ``max_ejection``), where the
multiplier is one more than it was the last time. While a host stays in service the
multiplier decays by one every ``interval`` after its last ejection ended (Envoy's sweep
decrements it once per ``interval`` for a healthy host), so a host that fails again soon
is ejected for longer and longer, and one that recovered comes back to ``base_ejection``
after about ``max_ejection / base_ejection * interval`` seconds.

Envoy finds expired ejections on a sweep timer every ``interval``; here an ejection ends
exactly at its deadline, found lazily the next time the detector is asked (no timer).

Rules kept
----------

* At most ``max(1, floor(hosts * max_ejection_percent / 100))`` hosts are ejected at any
  time, also after `update_hosts` shrinks the pool (the ejections nearest their end are
  lifted first: a shrinking pool needs its hosts back).
* `ejected` returns the same frozenset object until an ejection starts or ends: no set is
  built per call. `record` and `is_ejected` do O(1) work.
* Outcomes for hosts not in the pool are ignored, so memory stays bounded by the pool; a
  host that leaves and returns starts afresh (as when Envoy drops a host's monitor).
* Outcomes that arrive for an ejected host (calls sent before the ejection) are ignored.
* Ejecting every host is possible with a pool of one; the balancer must then treat "all
  ejected" as "use them all" (Envoy's panic threshold), never as "no hosts".

Pure and not thread-safe: driven from one event loop or under the caller's lock. ``now``
is seconds on the caller's monotonic clock.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from ._validate import require_int, require_number
from .outcome import Outcome

_SUCCESS = Outcome.SUCCESS
_FAILURE = Outcome.FAILURE
_RESET = Outcome.RESET
_INF = math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierConfig:
    """Tunables of outlier detection. A consecutive threshold of 0 turns that check off."""

    consecutive_failures: int = 5
    consecutive_local_failures: int = 5
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 10.0

    def __post_init__(self) -> None:
        require_int("OutlierConfig", "consecutive_failures", self.consecutive_failures, minimum=0)
        require_int(
            "OutlierConfig",
            "consecutive_local_failures",
            self.consecutive_local_failures,
            minimum=0,
        )
        require_number("OutlierConfig", "interval", self.interval, minimum=0.0, min_open=True)
        require_number(
            "OutlierConfig", "base_ejection", self.base_ejection, minimum=0.0, min_open=True
        )
        require_number(
            "OutlierConfig", "max_ejection", self.max_ejection, minimum=float(self.base_ejection)
        )
        require_number(
            "OutlierConfig",
            "max_ejection_percent",
            self.max_ejection_percent,
            minimum=0.0,
            maximum=100.0,
        )

    def max_ejected(self, hosts: int) -> int:
        """How many of ``hosts`` may be ejected at once: the percentage, but at least one."""
        if hosts <= 0:
            return 0
        share = math.floor(hosts * self.max_ejection_percent / 100.0 + 1e-9)
        return share if share > 1 else 1


class _Host:
    """One host's counters and ejection history (mutable, private)."""

    __slots__ = ("ejected_until", "failures", "local_failures", "multiplier", "returned_at")

    def __init__(self) -> None:
        self.failures = 0
        self.local_failures = 0
        self.multiplier = 0  # times ejected in a row, before decay since `returned_at`
        self.ejected_until: float | None = None
        self.returned_at = 0.0  # when the last ejection ended


class OutlierDetector:
    """Consecutive-failure outlier ejection over one pool of hosts."""

    __slots__ = (
        "_base",
        "_config",
        "_ejected",
        "_ejected_until",
        "_ejections_total",
        "_hosts",
        "_local_threshold",
        "_max_ejected",
        "_max_multiplier",
        "_next_expiry",
        "_overflow",
        "_threshold",
    )

    def __init__(self, config: OutlierConfig | None = None) -> None:
        self._config = config = config if config is not None else OutlierConfig()
        self._threshold = config.consecutive_failures
        self._local_threshold = config.consecutive_local_failures
        self._base = config.base_ejection
        # Beyond this the ejection time is capped anyway; growing further would only slow
        # the decay back to base_ejection.
        self._max_multiplier = max(1, math.ceil(config.max_ejection / config.base_ejection))
        self._hosts: dict[str, _Host] = {}
        self._ejected_until: dict[str, float] = {}
        self._ejected: frozenset[str] = frozenset()
        self._next_expiry = _INF
        self._max_ejected = 0
        self._ejections_total = 0
        self._overflow = 0

    @property
    def config(self) -> OutlierConfig:
        return self._config

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(self._hosts)

    @property
    def ejections_total(self) -> int:
        """Ejections since the detector was made."""
        return self._ejections_total

    @property
    def overflow(self) -> int:
        """Ejections refused because the pool's ejection share was used up."""
        return self._overflow

    @property
    def max_ejected(self) -> int:
        """How many hosts of the current pool may be ejected at once."""
        return self._max_ejected

    def update_hosts(self, host_ids: Collection[str], now: float) -> None:
        """Make the pool exactly ``host_ids``: newcomers start clean, leavers are forgotten."""
        wanted = set(host_ids)
        hosts = self._hosts
        for gone in [h for h in hosts if h not in wanted]:
            del hosts[gone]
            self._ejected_until.pop(gone, None)
        for host_id in wanted:
            if host_id not in hosts:
                hosts[host_id] = _Host()
        self._max_ejected = self._config.max_ejected(len(hosts))
        self._expire(now, force=True)
        excess = len(self._ejected_until) - self._max_ejected
        if excess > 0:
            soonest = sorted(self._ejected_until, key=self._ejected_until.__getitem__)
            for host_id in soonest[:excess]:
                self._return(host_id, now)
            self._rebuild()

    def record(self, host_id: str, now: float, outcome: Outcome) -> None:
        """The outcome of one attempt on ``host_id``."""
        host = self._hosts.get(host_id)
        if host is None:
            return
        if now >= self._next_expiry:
            self._expire(now)
        if host.ejected_until is not None:
            return
        if outcome is _SUCCESS:
            host.failures = 0
            host.local_failures = 0
        elif outcome is _FAILURE or outcome is _RESET:
            host.local_failures = 0  # it was reachable
            host.failures += 1
            if self._threshold and host.failures >= self._threshold:
                self._try_eject(host_id, host, now)
        else:
            host.local_failures += 1
            if self._local_threshold and host.local_failures >= self._local_threshold:
                self._try_eject(host_id, host, now)

    def ejected(self, now: float) -> frozenset[str]:
        """The hosts out of service at ``now`` (the same object until something changes)."""
        if now >= self._next_expiry:
            self._expire(now)
        return self._ejected

    def is_ejected(self, host_id: str, now: float) -> bool:
        if now >= self._next_expiry:
            self._expire(now)
        return host_id in self._ejected_until

    def ejection_multiplier(self, host_id: str, now: float) -> int:
        """The multiplier the host's next ejection would grow from (after decay); 0 if new."""
        host = self._hosts.get(host_id)
        if host is None:
            raise KeyError(host_id)
        if now >= self._next_expiry:
            self._expire(now)
        return self._decayed(host, now)

    # --- internals -------------------------------------------------------------------

    def _decayed(self, host: _Host, now: float) -> int:
        if host.ejected_until is not None or host.multiplier == 0:
            return host.multiplier
        steps = int((now - host.returned_at) // self._config.interval)
        return host.multiplier - steps if steps < host.multiplier else 0

    def _try_eject(self, host_id: str, host: _Host, now: float) -> None:
        if len(self._ejected_until) >= self._max_ejected:
            self._overflow += 1
            return
        multiplier = self._decayed(host, now) + 1
        if multiplier > self._max_multiplier:
            multiplier = self._max_multiplier
        host.multiplier = multiplier
        duration = self._base * multiplier
        if duration > self._config.max_ejection:
            duration = self._config.max_ejection
        until = now + duration
        host.ejected_until = until
        host.failures = host.local_failures = 0
        self._ejected_until[host_id] = until
        self._ejections_total += 1
        if until < self._next_expiry:
            self._next_expiry = until
        self._ejected = self._ejected | {host_id}

    def _return(self, host_id: str, at: float) -> None:
        host = self._hosts[host_id]
        host.ejected_until = None
        host.returned_at = at
        host.failures = host.local_failures = 0
        del self._ejected_until[host_id]

    def _expire(self, now: float, *, force: bool = False) -> None:
        """End every ejection due by ``now``; rebuild the cached set if any ended."""
        ended = [h for h, until in self._ejected_until.items() if until <= now]
        for host_id in ended:
            # The ejection ended at its deadline, not when we noticed: decay counts from then.
            self._return(host_id, self._ejected_until[host_id])
        if ended or force:
            self._rebuild()

    def _rebuild(self) -> None:
        self._ejected = frozenset(self._ejected_until)
        self._next_expiry = min(self._ejected_until.values(), default=_INF)
