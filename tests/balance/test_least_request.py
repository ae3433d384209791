"""Least request: P2C on outstanding requests; Envoy's dynamic-weight EDF when weights differ."""

from __future__ import annotations

from collections import Counter

from shoal.balance import Host

from .helpers import balancer, picks, pool, run


def test_two_hosts_always_compare_both() -> None:
    """Distinct candidates: with two hosts the less loaded one is always chosen."""
    b = balancer("least_request", pool(2))
    b.started("h0", 0.0)
    assert set(picks(b, 100)) == {"h1"}


def test_moves_away_from_a_host_with_many_outstanding() -> None:
    b = balancer("least_request", pool(5))
    for _ in range(50):
        b.started("h0", 0.0)
    counts = Counter(picks(b, 2000))
    # h0 wins only when it is drawn twice, which distinct draws never do.
    assert counts["h0"] == 0
    assert all(counts[f"h{i}"] > 350 for i in range(1, 5))


def test_outstanding_requests_balance_under_a_simulated_run() -> None:
    """One host four times slower: P2C keeps it from piling up requests."""
    b = balancer("least_request", pool(4))

    def latency(host_id: str, t: float) -> tuple[float, bool]:
        return (0.4 if host_id == "h0" else 0.1), True

    counts = run(b, latency, rate=40.0, duration=60.0)
    fair = sum(counts.values()) / 4
    assert counts["h0"] < 0.6 * fair
    assert b.load("h0", 60.0).outstanding <= 4  # type: ignore[union-attr]


def test_choice_count_three_scans_three() -> None:
    b = balancer("least_request", pool(3), choice_count=3)
    b.started("h0", 0.0)
    b.started("h1", 0.0)
    assert set(picks(b, 50)) == {"h2"}  # all three compared every time


def test_unequal_weights_follow_weights_with_no_load() -> None:
    hosts = [Host(id="a", weight=1.0), Host(id="b", weight=3.0)]
    counts = Counter(picks(balancer("least_request", hosts), 400))
    assert counts == {"a": 100, "b": 300}  # EDF: exact at zero load


def test_unequal_weights_outstanding_lowers_the_dynamic_weight() -> None:
    hosts = [Host(id="a", weight=1.0), Host(id="b", weight=3.0)]
    b = balancer("least_request", hosts)
    for _ in range(5):
        b.started("b", 0.0)  # b's dynamic weight: 3 / 6 = 0.5, below a's 1.0
    counts = Counter(picks(b, 300))
    assert counts["a"] > counts["b"] > 0  # less and less, never drained


def test_bias_zero_ignores_load() -> None:
    hosts = [Host(id="a", weight=1.0), Host(id="b", weight=3.0)]
    b = balancer("least_request", hosts, active_request_bias=0.0)
    for _ in range(50):
        b.started("b", 0.0)
    assert Counter(picks(b, 400)) == {"a": 100, "b": 300}


def test_schedule_survives_update_and_exclusion() -> None:
    hosts = [Host(id="a", weight=1.0), Host(id="b", weight=2.0), Host(id="c", weight=3.0)]
    b = balancer("least_request", hosts)
    reference = balancer("least_request", hosts)
    first = picks(b, 5)
    b.update(hosts, 1.0)  # same pool: deadlines kept, schedule continues
    assert first + picks(b, 7) == picks(reference, 12)
    assert "c" not in picks(b, 12, exclude={"c"})
    # c used up its turns while excluded instead of banking them: no burst after.
    assert Counter(picks(b, 60))["c"] == 30
