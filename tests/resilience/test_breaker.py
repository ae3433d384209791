"""CircuitBreaker: each transition of the state machine, driven by a fake clock (floats)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    Outcome,
)

OK = Outcome.SUCCESS
BAD = Outcome.FAILURE
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def call(b: CircuitBreaker, now: float, outcome: Outcome, duration: float = 0.01) -> bool:
    """One call through the breaker the way the attempt loop makes it."""
    if not b.allow(now):
        return False
    b.record(now + duration, outcome, duration)
    return True


def opened(config: BreakerConfig | None = None, now: float = 0.0) -> CircuitBreaker:
    config = config or BreakerConfig(window=10, minimum_calls=4, failure_rate=0.5)
    b = CircuitBreaker(config)
    while b.state(now) is CLOSED:
        assert b.allow(now)
        b.record(now, BAD, 0.0)
    assert b.state(now) is OPEN
    return b


# --- CLOSED -> OPEN --------------------------------------------------------------------


def test_defaults() -> None:
    c = BreakerConfig()
    assert (c.window, c.minimum_calls, c.failure_rate) == (20, 10, 0.5)
    assert (c.open_duration, c.half_open_calls) == (5.0, 3)
    assert c.slow_call_duration is None
    assert CircuitBreaker().state(0.0) is CLOSED


def test_opens_on_failure_rate() -> None:
    b = CircuitBreaker(BreakerConfig(window=10, minimum_calls=10, failure_rate=0.5))
    for i in range(5):
        call(b, float(i), OK)
    for i in range(4):
        call(b, 5.0 + i, BAD)
    assert b.state(9.0) is CLOSED  # 9 calls: below minimum_calls
    call(b, 9.0, BAD)  # 10 calls, 5 failed: 50 % >= 50 %
    assert b.state(9.1) is OPEN
    assert not b.allow(9.2)


def test_does_not_open_before_minimum_calls() -> None:
    b = CircuitBreaker(BreakerConfig(window=20, minimum_calls=10, failure_rate=0.5))
    for i in range(9):
        call(b, float(i), BAD)
    assert b.state(9.0) is CLOSED
    assert b.failure_rate is None
    call(b, 9.0, BAD)
    assert b.state(9.0) is OPEN


def test_stays_closed_below_the_failure_rate() -> None:
    b = CircuitBreaker(BreakerConfig(window=10, minimum_calls=10, failure_rate=0.5))
    for i in range(100):
        call(b, float(i), BAD if i % 3 == 0 else OK)  # 33-40 % failing
    assert b.state(100.0) is CLOSED
    assert b.failure_rate is not None and b.failure_rate < 0.5


def test_window_slides_old_failures_out() -> None:
    b = CircuitBreaker(BreakerConfig(window=10, minimum_calls=10, failure_rate=0.5))
    for i in range(4):
        call(b, float(i), BAD)
    for i in range(10):
        call(b, 10.0 + i, OK)  # pushes the 4 failures out of the window
    assert b.failure_rate == 0.0
    for i in range(4):
        call(b, 30.0 + i, BAD)
    assert b.state(40.0) is CLOSED  # 4 of the last 10, not 8 of 18
    call(b, 41.0, BAD)
    assert b.state(41.0) is OPEN


def test_every_non_success_outcome_counts_as_failed_by_default() -> None:
    for outcome in (Outcome.FAILURE, Outcome.TIMEOUT, Outcome.CONNECT_FAILURE, Outcome.RESET):
        b = CircuitBreaker(BreakerConfig(window=2, minimum_calls=2, failure_rate=1.0))
        call(b, 0.0, outcome)
        call(b, 0.0, outcome)
        assert b.state(0.0) is OPEN, outcome


def test_failure_outcomes_can_be_narrowed() -> None:
    config = BreakerConfig(
        window=2, minimum_calls=2, failure_rate=1.0, failure_outcomes=frozenset({BAD})
    )
    b = CircuitBreaker(config)
    call(b, 0.0, Outcome.TIMEOUT)
    call(b, 0.0, Outcome.TIMEOUT)
    assert b.state(0.0) is CLOSED


def test_opens_on_slow_call_rate() -> None:
    config = BreakerConfig(window=10, minimum_calls=5, slow_call_duration=1.0, slow_call_rate=0.6)
    b = CircuitBreaker(config)
    call(b, 0.0, OK, duration=0.2)
    call(b, 1.0, OK, duration=0.2)
    call(b, 2.0, OK, duration=1.5)
    call(b, 3.0, OK, duration=1.0)  # exactly the threshold counts as slow
    assert b.state(5.0) is CLOSED  # 4 calls: below minimum
    call(b, 5.0, OK, duration=2.0)  # 3 slow of 5 = 60 %
    assert b.slow_call_rate is None  # the window was reset on opening
    assert b.state(7.0) is OPEN


def test_slow_calls_are_ignored_when_off() -> None:
    b = CircuitBreaker(BreakerConfig(window=5, minimum_calls=5))
    for i in range(20):
        call(b, float(i), OK, duration=100.0)
    assert b.state(30.0) is CLOSED
    assert b.slow_call_rate == 0.0


# --- OPEN -> HALF_OPEN -----------------------------------------------------------------


def test_open_refuses_until_open_duration_then_half_opens() -> None:
    b = opened(BreakerConfig(window=4, minimum_calls=4, open_duration=5.0), now=100.0)
    assert not b.allow(100.0)
    assert not b.allow(104.999)
    assert b.state(104.999) is OPEN
    assert b.state(105.0) is HALF_OPEN
    assert b.allow(105.0)
    assert b.not_permitted == 2


def test_allow_moves_open_to_half_open_without_state_being_asked() -> None:
    b = opened(BreakerConfig(window=4, minimum_calls=4, open_duration=2.0), now=0.0)
    assert b.allow(2.5)
    assert b.state(2.5) is HALF_OPEN


def test_outcomes_while_open_change_nothing() -> None:
    b = opened(BreakerConfig(window=4, minimum_calls=4, open_duration=5.0), now=0.0)
    for _ in range(10):
        b.record(1.0, OK, 0.01)  # stragglers admitted while closed
    assert b.state(4.0) is OPEN
    assert b.state(5.0) is HALF_OPEN


# --- HALF_OPEN -> CLOSED / OPEN --------------------------------------------------------


def half_opened(half_open_calls: int = 3, **kw: float) -> CircuitBreaker:
    config = BreakerConfig(
        window=4, minimum_calls=4, open_duration=5.0, half_open_calls=half_open_calls, **kw
    )
    b = opened(config, now=0.0)
    assert b.state(5.0) is HALF_OPEN
    return b


def test_half_open_closes_after_enough_successful_probes() -> None:
    b = half_opened(half_open_calls=3)
    assert call(b, 5.0, OK)
    assert call(b, 5.1, OK)
    assert b.state(5.2) is HALF_OPEN
    assert call(b, 5.2, OK)
    assert b.state(5.3) is CLOSED
    assert b.buffered_calls == 0  # a fresh window after closing
    assert all(b.allow(5.4) for _ in range(100))


def test_half_open_reopens_on_a_failed_probe() -> None:
    b = half_opened(half_open_calls=3)
    assert call(b, 5.0, OK)
    assert call(b, 5.1, BAD)
    assert b.state(5.2) is OPEN
    assert not b.allow(10.0)
    assert b.state(10.1) is OPEN  # open again for a full open_duration from 5.11
    assert b.state(10.11) is HALF_OPEN


def test_half_open_reopens_on_a_slow_probe() -> None:
    b = half_opened(half_open_calls=2, slow_call_duration=1.0)
    assert b.allow(5.0)
    b.record(6.5, OK, 1.5)
    assert b.state(6.5) is OPEN


def test_half_open_permits_are_bounded() -> None:
    b = half_opened(half_open_calls=3)
    assert [b.allow(5.0) for _ in range(5)] == [True, True, True, False, False]
    b.record(5.1, OK, 0.1)
    assert not b.allow(5.1)  # successes count towards the quota: no fourth probe
    b.release(5.2)  # one probe was cancelled before it ran: its permit comes back
    assert b.allow(5.2)
    assert not b.allow(5.2)


def test_release_outside_half_open_is_harmless() -> None:
    b = CircuitBreaker()
    assert b.allow(0.0)
    b.release(0.0)
    assert b.state(0.0) is CLOSED
    half = half_opened()
    half.release(5.0)  # no probe in flight: nothing to give back
    assert [half.allow(5.0) for _ in range(4)] == [True, True, True, False]


def test_half_open_ignores_outcomes_with_no_probe_in_flight() -> None:
    b = half_opened(half_open_calls=1)
    b.record(5.0, BAD, 0.1)  # admitted before the breaker opened
    assert b.state(5.0) is HALF_OPEN
    assert call(b, 5.1, OK)
    assert b.state(5.2) is CLOSED


def test_half_open_max_wait_reopens_a_breaker_whose_probes_leaked() -> None:
    b = half_opened(half_open_calls=1, half_open_max_wait=2.0)
    assert b.allow(5.0)  # this probe is never recorded nor released
    assert not b.allow(6.0)
    assert b.state(7.0) is OPEN
    assert b.state(12.0) is HALF_OPEN
    assert call(b, 12.0, OK)
    assert b.state(12.1) is CLOSED


def test_the_listener_sees_every_transition() -> None:
    seen: list[BreakerTransition] = []
    config = BreakerConfig(window=2, minimum_calls=2, open_duration=1.0, half_open_calls=1)
    b = CircuitBreaker(config, on_transition=seen.append)
    for now, outcome in [(0.0, BAD), (0.0, BAD), (1.0, BAD), (2.0, OK)]:
        assert b.allow(now)
        b.record(now, outcome, 0.0)
    assert [(t.from_state, t.to_state, t.at, t.reason) for t in seen] == [
        (CLOSED, OPEN, 0.0, "failure_rate"),
        (OPEN, HALF_OPEN, 1.0, "open_elapsed"),
        (HALF_OPEN, OPEN, 1.0, "probe_failed"),
        (OPEN, HALF_OPEN, 2.0, "open_elapsed"),
        (HALF_OPEN, CLOSED, 2.0, "probes_succeeded"),
    ]


# --- properties ------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.floats(0.0, 3.0),  # time advance
        st.sampled_from(["ok", "bad", "slow", "release", "leak"]),
    ),
    max_size=200,
)


@settings(deadline=None)
@given(steps=steps, half_open_calls=st.integers(1, 4), max_wait=st.sampled_from([None, 4.0]))
def test_probes_in_flight_never_exceed_half_open_calls(
    steps: list[tuple[float, str]], half_open_calls: int, max_wait: float | None
) -> None:
    probes = 0

    def on_transition(t: BreakerTransition) -> None:
        nonlocal probes
        probes = 0  # a new episode: earlier probes no longer hold permits

    config = BreakerConfig(
        window=5, minimum_calls=3, open_duration=2.0, half_open_calls=half_open_calls,
        slow_call_duration=1.0, half_open_max_wait=max_wait,
    )  # fmt: skip
    b = CircuitBreaker(config, on_transition=on_transition)
    now = 0.0
    for advance, action in steps:
        now += advance
        before = b.state(now)
        allowed = b.allow(now)
        if before is OPEN:
            assert not allowed  # state() already moved it to HALF_OPEN if it was due
        if not allowed:
            continue
        if before is HALF_OPEN:
            probes += 1
            assert probes <= half_open_calls
        if action == "release":
            b.release(now)
            if before is HALF_OPEN:
                probes -= 1
        elif action != "leak":
            b.record(now, BAD if action == "bad" else OK, 1.5 if action == "slow" else 0.1)


@settings(deadline=None)
@given(outcomes=st.lists(st.booleans(), min_size=1, max_size=300))
def test_closed_window_counts_match_a_naive_model(outcomes: list[bool]) -> None:
    config = BreakerConfig(window=7, minimum_calls=7, failure_rate=1.0)
    b = CircuitBreaker(config)
    history: list[bool] = []
    for i, failed in enumerate(outcomes):
        if b.state(float(i)) is not CLOSED:
            break
        call(b, float(i), BAD if failed else OK)
        history.append(failed)
        if b.state(float(i)) is OPEN:
            assert all(history[-7:]) and len(history) >= 7
            break
        last = history[-7:]
        assert b.buffered_calls == len(last)
        if len(last) >= 7:
            assert b.failure_rate == sum(last) / len(last)
