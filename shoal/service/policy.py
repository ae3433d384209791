"""`ClientPolicy`: how a service calls another one -- balancing, timeouts, retries, breakers.

Set from code (`svc.client("users", policy=ClientPolicy(balancer="ring_hash"))`) or from
the config center (`svc.client("users", policy_item="prod/users-client")`), whose content
(JSON, YAML, TOML) is the mapping `ClientPolicy.from_mapping` reads, hot-reloaded:

    balancer: peak_ewma          # any of shoal.balance.POLICIES
    timeout: 2s                  # the whole call, retries included
    attempt_timeout: 500ms
    max_attempts: 3
    retry_statuses: [502, 503, 504]
    budget: {ratio: 0.2, min_concurrent: 10}
    breaker: {failure_rate: 0.5, open_duration: 5s}    # or false
    outlier: {consecutive_failures: 5, base_ejection: 30s}   # or false
    tags: [v2]                   # call only instances with these tags

Defaults, and why: peak-EWMA P2C balancing (Linkerd's default; it moves load away from
slow or failing replicas within a few requests, where round robin keeps sending them a
fixed share -- see bench/linkerd_balancing.py); a 15 s overall timeout (Envoy's route
default) split into 5 s attempts, so a hung replica costs one attempt, not the whole call;
the retry, budget, breaker and outlier defaults of `shoal.resilience` (docs/resilience.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..balance import POLICIES
from ..registry import RegistryError, parse_duration
from ..resilience import BreakerConfig, OutlierConfig, RetryPolicy, Timeouts
from ..resilience.call import CallPolicy

__all__ = ["ClientPolicy", "PolicyError"]


class PolicyError(ValueError):
    """A client policy that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientPolicy:
    balancer: str = "peak_ewma"
    balancer_options: Mapping[str, Any] = field(default_factory=dict)
    zone_aware: bool = True  # prefer the caller's zone when the service has one
    slow_start: float = 0.0  # seconds over which a new instance's weight ramps up
    timeout: float | None = 15.0
    attempt_timeout: float | None = 5.0
    max_attempts: int = 3
    retry_statuses: frozenset[int] = frozenset({502, 503, 504})
    retry_non_idempotent: bool = False
    budget_ratio: float = 0.2
    budget_min_concurrent: int = 10
    breaker: BreakerConfig | None = BreakerConfig()
    outlier: OutlierConfig | None = OutlierConfig()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.balancer not in POLICIES:
            raise PolicyError(
                f"balancer must be one of {', '.join(POLICIES)}, got {self.balancer!r}"
            )
        try:
            self.call_policy()
        except ValueError as error:
            raise PolicyError(str(error)) from None

    def call_policy(self) -> CallPolicy:
        attempt = self.attempt_timeout
        if attempt is not None and self.timeout is not None:
            attempt = min(attempt, self.timeout)
        return CallPolicy(
            timeouts=Timeouts(overall=self.timeout, per_attempt=attempt),
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                retry_statuses=self.retry_statuses,
                retry_non_idempotent=self.retry_non_idempotent,
            ),
            budget_ratio=self.budget_ratio,
            budget_min_concurrent=self.budget_min_concurrent,
            breaker=self.breaker,
            outlier=self.outlier,
        )

    @classmethod
    def from_mapping(cls, data: Any, base: ClientPolicy | None = None) -> ClientPolicy:
        """A policy from a config item's parsed content, over `base` (default: defaults).
        Unknown keys and wrong types are refused with the key's name."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"a client policy is a mapping, got {type(data).__name__}")
        out = base or cls()
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("timeout", "attempt_timeout", "slow_start"):
                changes[key] = None if value is None else _seconds(value, key)
            elif key in ("balancer",):
                changes[key] = _text(value, key)
            elif key == "balancer_options":
                changes[key] = dict(_mapping(value, key))
            elif key in ("zone_aware", "retry_non_idempotent"):
                changes[key] = _flag(value, key)
            elif key == "max_attempts":
                changes[key] = _int(value, key)
            elif key == "retry_statuses":
                changes[key] = frozenset(_int(v, key) for v in _list(value, key))
            elif key == "tags":
                changes[key] = tuple(_text(v, key) for v in _list(value, key))
            elif key == "budget":
                budget = _mapping(value, key)
                _only(budget, key, {"ratio", "min_concurrent"})
                if "ratio" in budget:
                    changes["budget_ratio"] = _number(budget["ratio"], "budget.ratio")
                if "min_concurrent" in budget:
                    changes["budget_min_concurrent"] = _int(
                        budget["min_concurrent"], "budget.min_concurrent"
                    )
            elif key == "breaker":
                changes[key] = _section(value, key, BreakerConfig)
            elif key == "outlier":
                changes[key] = _section(value, key, OutlierConfig)
            else:
                raise PolicyError(f"unknown client policy key {key!r}")
        try:
            return replace(out, **changes)
        except PolicyError:
            raise
        except (TypeError, ValueError) as error:
            raise PolicyError(str(error)) from None


_DURATION_FIELDS = frozenset(
    {
        "slow_call_duration",
        "open_duration",
        "half_open_max_wait",
        "interval",
        "base_ejection",
        "max_ejection",
    }
)


def _section(value: Any, key: str, kind: type[Any]) -> Any:
    if value is False or value is None:
        return None
    if value is True:
        return kind()
    section = _mapping(value, key)
    allowed = {f.name for f in fields(kind)} - {"failure_outcomes"}
    _only(section, key, allowed)
    args = {
        name: _seconds(v, f"{key}.{name}") if name in _DURATION_FIELDS and v is not None else v
        for name, v in section.items()
    }
    try:
        return kind(**args)
    except (TypeError, ValueError) as error:
        raise PolicyError(f"{key}: {error}") from None


def _only(section: Mapping[str, Any], key: str, allowed: set[str]) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise PolicyError(f"unknown key {key}.{unknown[0]} (known: {', '.join(sorted(allowed))})")


def _seconds(value: Any, key: str) -> float:
    try:
        return parse_duration(value, key)
    except RegistryError as error:
        raise PolicyError(str(error)) from None


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{key} must be a mapping, got {value!r}")
    return value


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise PolicyError(f"{key} must be a list, got {value!r}")
    return list(value)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{key} must be a string, got {value!r}")
    return value


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{key} must be true or false, got {value!r}")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{key} must be an integer, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{key} must be a number, got {value!r}")
    return float(value)
