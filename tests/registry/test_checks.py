"""Check definitions, durations and the rise/fall state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.registry import (
    CheckSpec,
    CheckState,
    HealthStatus,
    RegistryError,
    format_duration,
    observe,
    parse_check,
    parse_duration,
)

PASSING, CRITICAL, WARNING = HealthStatus.PASSING, HealthStatus.CRITICAL, HealthStatus.WARNING


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1s", 1.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), (3, 3.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("bad", ["", "1", "1x", "-1s", "0s", "abc", True, None, "31d", 10**9])
def test_bad_durations_name_the_field(bad: object) -> None:
    with pytest.raises(RegistryError) as info:
        parse_duration(bad, "check.interval")
    assert info.value.field == "check.interval"


def test_http_check_from_the_issue_example() -> None:
    spec = parse_check(
        {
            "type": "http",
            "path": "/healthz",
            "interval": "1s",
            "timeout": "500ms",
            "fall": 2,
            "rise": 1,
        }
    )
    assert spec == CheckSpec(
        type="http", path="/healthz", interval=1.0, timeout=0.5, fall=2, rise=1
    )
    assert spec.is_active
    assert parse_check(spec.to_json()) == spec


def test_tcp_and_ttl_checks() -> None:
    tcp = parse_check({"type": "tcp", "interval": "250ms"})
    assert tcp.interval == 0.25 and tcp.timeout == 0.25 and tcp.is_active
    ttl = parse_check({"type": "ttl", "ttl": "2.5s"})
    assert not ttl.is_active and ttl.lease_ttl == 3
    assert parse_check(ttl.to_json()) == ttl
    assert format_duration(0.25) == "250ms"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "smtp"}, "check.type"),
        ({"type": "http", "colour": 1}, "check.colour"),
        ({"type": "ttl"}, "check.ttl"),
        ({"type": "ttl", "ttl": "3s", "interval": "1s"}, "check.interval"),
        ({"type": "http", "path": "healthz"}, "check.path"),
        ({"type": "http", "interval": "1s", "timeout": "2s"}, "check.timeout"),
        ({"type": "http", "interval": "1ms"}, "check.interval"),
        ({"type": "tcp", "fall": 0}, "check.fall"),
        ({"type": "tcp", "rise": "2"}, "check.rise"),
        ("http", "check"),
    ],
)
def test_bad_checks_name_the_field(data: object, field: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_check(data)
    assert info.value.field == field


def run(state: CheckState, results: str, rise: int, fall: int) -> list[HealthStatus]:
    seen = []
    for r in results:
        state = observe(state, r == "+", rise=rise, fall=fall)
        seen.append(state.status)
    return seen


def test_fall_needs_consecutive_failures() -> None:
    statuses = run(CheckState(PASSING), "-+-+--", rise=1, fall=2)
    assert statuses == [PASSING] * 5 + [CRITICAL]


def test_rise_needs_consecutive_successes() -> None:
    statuses = run(CheckState(CRITICAL), "++-+++", rise=3, fall=2)
    assert statuses == [CRITICAL] * 5 + [PASSING]


def test_warning_recovers_or_falls() -> None:
    assert run(CheckState(WARNING), "+", rise=1, fall=1) == [PASSING]
    assert run(CheckState(WARNING), "--", rise=1, fall=2) == [WARNING, CRITICAL]


@given(
    st.lists(st.booleans(), max_size=40),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=1, max_value=5),
    st.sampled_from([PASSING, CRITICAL]),
)
def test_status_flips_only_after_a_full_run(
    results: list[bool], rise: int, fall: int, start: HealthStatus
) -> None:
    state = CheckState(start)
    history: list[bool] = []
    for ok in results:
        before = state.status
        state = observe(state, ok, rise=rise, fall=fall)
        history.append(ok)
        if state.status is not before:
            need = rise if ok else fall
            assert len(history) >= need and all(r == ok for r in history[-need:])
            assert state.status is (PASSING if ok else CRITICAL)
