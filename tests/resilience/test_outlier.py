"""OutlierDetector: consecutive-failure ejection, growing and decaying times, the cap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import Outcome, OutlierConfig, OutlierDetector

OK = Outcome.SUCCESS
BAD = Outcome.FAILURE
HOSTS = [f"h{i}" for i in range(10)]


def detector(hosts: list[str] = HOSTS, **kw: float) -> OutlierDetector:
    d = OutlierDetector(OutlierConfig(**kw))  # type: ignore[arg-type]
    d.update_hosts(hosts, 0.0)
    return d


def fail(d: OutlierDetector, host: str, now: float, times: int, outcome: Outcome = BAD) -> None:
    for _ in range(times):
        d.record(host, now, outcome)


def test_defaults_are_envoys() -> None:
    c = OutlierConfig()
    assert (c.consecutive_failures, c.consecutive_local_failures) == (5, 5)
    assert (c.interval, c.base_ejection, c.max_ejection) == (10.0, 30.0, 300.0)
    assert c.max_ejection_percent == 10.0


def test_five_consecutive_failures_eject_for_base_ejection() -> None:
    d = detector()
    fail(d, "h1", 1.0, 4)
    assert not d.is_ejected("h1", 1.0)
    d.record("h1", 1.0, BAD)
    assert d.is_ejected("h1", 1.0)
    assert d.ejected(1.0) == {"h1"}
    assert d.is_ejected("h1", 30.999)
    assert not d.is_ejected("h1", 31.0)
    assert d.ejected(31.0) == frozenset()
    assert d.ejections_total == 1


def test_a_success_resets_the_count() -> None:
    d = detector()
    for _ in range(10):
        fail(d, "h1", 1.0, 4)
        d.record("h1", 1.0, OK)
    assert d.ejected(1.0) == frozenset()


def test_resets_count_with_server_errors() -> None:
    d = detector()
    fail(d, "h1", 1.0, 3)
    fail(d, "h1", 1.0, 2, Outcome.RESET)
    assert d.is_ejected("h1", 1.0)


def test_local_failures_have_their_own_counter() -> None:
    d = detector(consecutive_failures=5, consecutive_local_failures=3)
    fail(d, "h1", 1.0, 2, Outcome.TIMEOUT)
    d.record("h1", 1.0, Outcome.CONNECT_FAILURE)
    assert d.is_ejected("h1", 1.0)


def test_reaching_the_host_resets_the_local_counter_but_a_timeout_keeps_the_other() -> None:
    d = detector(consecutive_failures=3, consecutive_local_failures=3)
    fail(d, "h1", 1.0, 2, Outcome.TIMEOUT)
    d.record("h1", 1.0, BAD)  # it answered: the local streak is over
    d.record("h1", 1.0, Outcome.TIMEOUT)
    d.record("h1", 1.0, BAD)
    assert not d.is_ejected("h1", 1.0)
    d.record("h1", 1.0, BAD)  # third server error in a row, a timeout in between
    assert d.is_ejected("h1", 1.0)


def test_a_threshold_of_zero_turns_the_check_off() -> None:
    d = detector(consecutive_failures=0, consecutive_local_failures=2)
    fail(d, "h1", 1.0, 100)
    assert not d.is_ejected("h1", 1.0)
    fail(d, "h1", 1.0, 2, Outcome.TIMEOUT)
    assert d.is_ejected("h1", 1.0)


def test_ejection_time_grows_with_each_ejection_in_a_row() -> None:
    d = detector(base_ejection=30.0, max_ejection=100.0, interval=10.0)
    now = 0.0
    durations = []
    for _ in range(5):
        fail(d, "h1", now, 5)
        start = now
        while d.is_ejected("h1", now):
            now += 1.0
        durations.append(now - start)
        # The host fails again at once, before any decay interval has passed.
    assert durations == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_multiplier_decays_while_the_host_stays_healthy() -> None:
    d = detector(base_ejection=30.0, max_ejection=300.0, interval=10.0)
    fail(d, "h1", 0.0, 5)  # ejected 0..30, multiplier 1
    fail(d, "h1", 30.0, 5)  # ejected 30..90, multiplier 2
    fail(d, "h1", 90.0, 5)  # ejected 90..180, multiplier 3
    assert d.ejection_multiplier("h1", 179.0) == 3
    assert d.ejection_multiplier("h1", 180.0) == 3  # back in service at 180
    assert d.ejection_multiplier("h1", 189.9) == 3
    assert d.ejection_multiplier("h1", 190.0) == 2
    assert d.ejection_multiplier("h1", 200.0) == 1
    assert d.ejection_multiplier("h1", 210.0) == 0
    assert d.ejection_multiplier("h1", 999.0) == 0
    fail(d, "h1", 195.0, 5)  # decayed to 2 at 195: this ejection is 3 * 30
    assert d.is_ejected("h1", 284.9)
    assert not d.is_ejected("h1", 285.0)


def test_at_most_the_share_is_ejected() -> None:
    hosts = [f"h{i}" for i in range(20)]
    d = detector(hosts, max_ejection_percent=10.0)
    for host in hosts:
        fail(d, host, 1.0, 5)
    assert len(d.ejected(1.0)) == 2
    assert d.overflow == 18


def test_at_least_one_host_may_be_ejected_however_small_the_share() -> None:
    d = detector(["a", "b", "c"], max_ejection_percent=10.0)
    fail(d, "a", 1.0, 5)
    fail(d, "b", 1.0, 5)
    assert d.ejected(1.0) == {"a"}
    assert d.max_ejected == 1
    single = detector(["only"], max_ejection_percent=0.0)
    fail(single, "only", 1.0, 5)
    assert single.ejected(1.0) == {"only"}


def test_a_refused_host_is_ejected_on_its_next_failure_once_there_is_room() -> None:
    d = detector(["a", "b", "c"], max_ejection_percent=10.0)
    fail(d, "a", 0.0, 5)
    fail(d, "b", 0.0, 5)  # refused: the share is used by "a"
    assert d.ejected(29.0) == {"a"}
    d.record("b", 30.0, BAD)  # "a" is back; "b" is still failing
    assert d.ejected(30.0) == {"b"}


def test_ejected_is_the_same_object_until_something_changes() -> None:
    d = detector()
    fail(d, "h1", 0.0, 5)
    first = d.ejected(1.0)
    assert d.ejected(2.0) is first
    d.record("h2", 2.0, OK)
    assert d.ejected(3.0) is first
    assert d.ejected(30.0) is not first
    assert d.ejected(31.0) is d.ejected(32.0)


def test_outcomes_for_ejected_or_unknown_hosts_are_ignored() -> None:
    d = detector()
    fail(d, "h1", 0.0, 5)
    fail(d, "h1", 1.0, 50)  # in-flight calls finishing after the ejection
    assert d.ejection_multiplier("h1", 1.0) == 1
    assert not d.is_ejected("h1", 30.0)
    fail(d, "stranger", 1.0, 50)
    assert "stranger" not in d.hosts
    assert d.ejected(1.0) == frozenset()


def test_update_hosts_adds_and_forgets() -> None:
    d = detector(["a", "b"])
    fail(d, "a", 0.0, 5)
    d.update_hosts(["b", "c"], 1.0)
    assert d.hosts == {"b", "c"}
    assert d.ejected(1.0) == frozenset()
    d.update_hosts(["a", "b", "c"], 2.0)
    assert d.ejection_multiplier("a", 2.0) == 0  # a returning host starts afresh
    fail(d, "c", 2.0, 5)
    assert d.ejected(2.0) == {"c"}


def test_shrinking_the_pool_lifts_ejections_over_the_share() -> None:
    hosts = [f"h{i}" for i in range(20)]
    d = detector(hosts, max_ejection_percent=10.0)
    fail(d, "h0", 0.0, 5)  # until 30
    fail(d, "h1", 5.0, 5)  # until 35
    d.update_hosts(hosts[:10], 6.0)  # now only one may be out
    assert d.ejected(6.0) == {"h1"}  # h0 ended soonest and is lifted first


# --- properties ------------------------------------------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(
            st.just("record"),
            st.integers(0, 24),
            st.sampled_from(list(Outcome)),
            st.floats(0.0, 2.0),
        ),
        st.tuples(st.just("pool"), st.integers(1, 25), st.just(Outcome.SUCCESS), st.just(0.0)),
    ),
    max_size=400,
)


@settings(deadline=None)
@given(events=events, percent=st.sampled_from([0.0, 10.0, 25.0, 50.0, 100.0]))
def test_never_more_than_the_allowed_share_and_at_least_one_is_possible(
    events: list[tuple[str, int, Outcome, float]], percent: float
) -> None:
    config = OutlierConfig(
        consecutive_failures=1, consecutive_local_failures=2, max_ejection_percent=percent,
        base_ejection=15.0, max_ejection=60.0, interval=5.0,
    )  # fmt: skip
    d = OutlierDetector(config)
    pool = [f"h{i}" for i in range(10)]
    d.update_hosts(pool, 0.0)
    now = 0.0
    for kind, n, outcome, advance in events:
        now += advance
        if kind == "pool":
            pool = [f"h{i}" for i in range(n)]
            d.update_hosts(pool, now)
        else:
            d.record(f"h{n % max(1, len(pool))}", now, outcome)
        ejected = d.ejected(now)
        allowed = max(1, int(len(pool) * percent / 100 + 1e-9))
        assert len(ejected) <= allowed
        assert ejected <= set(pool)
        for host in pool:
            assert d.is_ejected(host, now) == (host in ejected)


@settings(deadline=None)
@given(
    hosts=st.integers(1, 30),
    percent=st.floats(0.0, 100.0),
)
def test_a_failing_host_is_always_ejectable_while_none_is(hosts: int, percent: float) -> None:
    d = OutlierDetector(OutlierConfig(max_ejection_percent=percent))
    d.update_hosts([f"h{i}" for i in range(hosts)], 0.0)
    fail(d, "h0", 0.0, 5)
    assert d.ejected(0.0) == {"h0"}
