"""P2C over peak EWMA: the estimate's arithmetic, and traffic under a fake clock."""

from __future__ import annotations

import math
import random

import pytest

from shoal.balance import Host, make_balancer

from .helpers import Simulation, balancer, picks, pool, run

TAU = 10.0


def estimate(b: object, host_id: str, now: float) -> float:
    load = b.load(host_id, now)  # type: ignore[attr-defined]
    assert load is not None and load.latency is not None
    return float(load.latency)


def test_first_sample_replaces_the_guess() -> None:
    b = balancer("peak_ewma", pool(2))
    b.finished("h0", 1.0, 0.250, True)
    assert estimate(b, "h0", 1.0) == pytest.approx(0.250)


def test_peak_replaces_and_lower_samples_blend_by_elapsed_time() -> None:
    b = balancer("peak_ewma", pool(1))
    b.finished("h0", 0.0, 0.010, True)
    b.finished("h0", 0.0, 0.500, True)  # a peak: taken at once
    assert estimate(b, "h0", 0.0) == pytest.approx(0.500)
    b.finished("h0", 1.0, 0.010, True)  # below: blended, weight of 1 s out of tau
    w = math.exp(-1.0 / TAU)
    assert estimate(b, "h0", 1.0) == pytest.approx(0.500 * w * w + 0.010 * (1 - w))


def test_estimate_fades_between_samples() -> None:
    b = balancer("peak_ewma", pool(1))
    b.finished("h0", 0.0, 1.0, True)
    assert estimate(b, "h0", TAU) == pytest.approx(math.exp(-1.0))
    assert estimate(b, "h0", 0.0) == 1.0  # reading does not change it


def test_unmeasured_hosts_are_as_slow_as_the_slowest_recent_success() -> None:
    b = balancer("peak_ewma", pool(3))
    assert estimate(b, "h2", 0.0) == pytest.approx(0.030)  # nothing measured: default_rtt
    b.finished("h0", 0.0, 0.050, True)
    b.finished("h1", 0.0, 0.200, True)
    assert estimate(b, "h2", 0.0) == pytest.approx(0.200)
    b.finished("h1", 0.0, 9.0, False)  # a failure is not a success: the reference stays
    assert estimate(b, "h2", 0.0) == pytest.approx(0.200)
    b.finished("h1", 0.0, 0.100, True)  # the slowest got faster
    assert estimate(b, "h2", 0.0) == pytest.approx(0.100)
    b.finished("h1", 0.0, 0.200, True)
    # A new host does not win against a known-faster one at equal load...
    assert "h2" not in picks(b, 50, exclude={"h1"})
    for _ in range(4):
        b.started("h0", 0.0)
    # ... but does once that one is busy enough: 0.050 * 5 > 0.200.
    assert set(picks(b, 50, exclude={"h1"})) == {"h2"}
    b.update(pool(3)[::2], 1.0)  # the slowest host left: the reference follows
    assert estimate(b, "h2", 1.0) == pytest.approx(0.050)


def test_default_rtt_option() -> None:
    b = balancer("peak_ewma", pool(1), default_rtt=0.5)
    assert estimate(b, "h0", 0.0) == 0.5


def test_moves_traffic_away_from_a_slow_host() -> None:
    b = balancer("peak_ewma", pool(5))

    def latency(host_id: str, t: float) -> tuple[float, bool]:
        return (0.100 if host_id == "h0" else 0.010), True

    counts = run(b, latency, rate=200.0, duration=30.0)
    fair = sum(counts.values()) / 5
    assert counts["h0"] < 0.2 * fair
    # Least-request alone would do less: it only sees the queue the slowness builds.
    lr = run(balancer("least_request", pool(5)), latency, rate=200.0, duration=30.0)
    assert counts["h0"] < lr["h0"]


def test_reacts_fast_to_a_spike_and_recovers_cautiously() -> None:
    """h0 is 20x slower from t=10 to t=20. Its traffic stops within the first samples of
    the spike, stays away a while after it ends (the peak fades with tau = 10 s), and
    comes back to a fair share once the faded estimate is below the others'."""
    b = balancer("peak_ewma", pool(4))

    def latency(host_id: str, t: float) -> tuple[float, bool]:
        slow = host_id == "h0" and 10.0 <= t < 20.0
        return (0.200 if slow else 0.010), True

    sim = Simulation(b, latency)
    share = {}
    for label, duration in [
        ("before", 10),
        ("spike", 2),
        ("during", 8),
        ("after", 10),
        ("later", 30),
        ("back", 10),
    ]:
        counts = sim.run(rate=100.0, duration=duration)
        share[label] = counts["h0"] / sum(counts.values())
    assert share["before"] > 0.2
    assert share["spike"] < 0.02  # one or two slow samples were enough
    assert share["during"] == 0.0
    assert share["after"] < 0.02  # fast again, but not trusted yet
    assert share["back"] > 0.2


def test_a_fast_failing_host_does_not_attract_traffic() -> None:
    b = balancer("peak_ewma", pool(5))

    def latency(host_id: str, t: float) -> tuple[float, bool]:
        if host_id == "h0":
            return 0.001, False  # fails ten times faster than the others succeed
        return 0.010, True

    counts = run(b, latency, rate=200.0, duration=30.0)
    fair = sum(counts.values()) / 5
    assert counts["h0"] < 0.5 * fair

    # Without the failure penalty it would take the most traffic of all.
    def no_failures(host_id: str, t: float) -> tuple[float, bool]:
        return latency(host_id, t)[0], True

    naive = run(balancer("peak_ewma", pool(5)), no_failures, rate=200.0, duration=30.0)
    assert naive["h0"] > fair


def test_failure_penalty_is_relative_and_does_not_compound() -> None:
    b = balancer("peak_ewma", pool(3))
    b.finished("h1", 0.0, 0.020, True)
    b.finished("h2", 0.0, 0.040, True)
    for _ in range(100):
        b.finished("h0", 0.0, 0.001, False)
    assert estimate(b, "h0", 0.0) == pytest.approx(0.160)  # 4 x the slowest success
    for _ in range(100):  # two hosts failing in turns cannot push each other up
        b.finished("h1", 0.0, 0.001, False)
        b.finished("h0", 0.0, 0.001, False)
    assert estimate(b, "h1", 0.0) == pytest.approx(0.160)
    assert estimate(b, "h0", 0.0) == pytest.approx(0.160)
    assert balancer("peak_ewma", pool(1), failure_multiplier=1.0) is not None


def test_a_partly_failing_host_gets_little_and_a_few_errors_everywhere_change_nothing() -> None:
    rng = random.Random(5)

    def one_bad(host_id: str, t: float) -> tuple[float, bool]:
        if host_id == "h0" and rng.random() < 0.2:
            return 0.001, False
        return 0.010, True

    counts = run(balancer("peak_ewma", pool(5)), one_bad, rate=200.0, duration=30.0)
    assert counts["h0"] < 0.05 * sum(counts.values())

    def all_some(host_id: str, t: float) -> tuple[float, bool]:
        return (0.001, False) if rng.random() < 0.05 else (0.010, True)

    counts = run(balancer("peak_ewma", pool(5)), all_some, rate=200.0, duration=30.0)
    fair = sum(counts.values()) / 5
    assert all(0.7 * fair < c < 1.3 * fair for c in counts.values()), counts


def test_weights_set_the_odds_of_being_a_candidate() -> None:
    hosts = [Host(id="a", weight=1.0), Host(id="b", weight=3.0), Host(id="c", weight=4.0)]
    b = make_balancer("peak_ewma", random.Random(3))
    b.update(hosts, 0.0)
    seq = picks(b, 8000)  # no load, nothing measured: all costs equal
    shares = [seq.count(h) / len(seq) for h in "abc"]
    assert shares == pytest.approx([1 / 8, 3 / 8, 4 / 8], abs=0.02)


def test_decay_option_changes_the_time_constant() -> None:
    b = balancer("peak_ewma", pool(1), decay=1.0)
    b.finished("h0", 0.0, 1.0, True)
    assert estimate(b, "h0", 1.0) == pytest.approx(math.exp(-1.0))
