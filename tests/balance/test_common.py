"""The contract every policy keeps (host.py's rules), checked for all of POLICIES."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.balance import POLICIES, BalanceError, Host, HostLoad, make_balancer

from .helpers import PROPERTY, balancer, picks, pool

HASHED = ("ring_hash", "maglev")


@st.composite
def pools(draw: st.DrawFn) -> list[Host]:
    n = draw(st.integers(min_value=0, max_value=8))
    weights = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 5.0])
    return [
        Host(id=f"h{i}", weight=draw(weights), zone=draw(st.sampled_from("ab"))) for i in range(n)
    ]


@pytest.mark.parametrize("policy", POLICIES)
def test_empty_pool_picks_none(policy: str) -> None:
    b = balancer(policy)
    assert b.pick(0.0) is None
    assert b.pick(0.0, key="k") is None
    assert b.hosts == ()


@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY
@given(hosts=pools(), data=st.data())
def test_pick_honours_exclude(policy: str, hosts: list[Host], data: st.DataObject) -> None:
    """Never an excluded host; None exactly when every host is excluded; weight 0 only
    when no positive-weight host is available."""
    ids = [h.id for h in hosts]
    zone = {"local_zone": "a", "zone_min_hosts": 1} if data.draw(st.booleans()) else {}
    b = balancer(policy, hosts, **zone)
    for _ in range(5):
        exclude = set(data.draw(st.lists(st.sampled_from([*ids, "gone"]), max_size=9)))
        key = data.draw(st.one_of(st.none(), st.text(max_size=4)))
        host = b.pick(1.0, key=key, exclude=exclude)
        left = [h for h in hosts if h.id not in exclude]
        if not left:
            assert host is None
            continue
        assert host is not None and host.id not in exclude and host in hosts
        if any(h.weight > 0 for h in left):
            assert host.weight > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_backup_hosts_only_when_nothing_else(policy: str) -> None:
    hosts = [
        Host(id="a"),
        Host(id="b", weight=2.0),
        Host(id="z1", weight=0),
        Host(id="z2", weight=0),
    ]
    b = balancer(policy, hosts)
    assert set(picks(b, 200)) <= {"a", "b"}
    backups = picks(b, 200, exclude={"a", "b"})
    assert set(backups) == {"z1", "z2"}  # both used: backups are picked among themselves
    assert b.pick(0.0, exclude={"a", "b", "z1", "z2"}) is None


@pytest.mark.parametrize("policy", POLICIES)
def test_update_keeps_state_of_staying_hosts(policy: str) -> None:
    b = balancer(policy, pool(3))
    b.started("h0", 0.0)
    b.started("h0", 0.0)
    b.started("h1", 0.0)
    b.update([Host(id="h0", weight=3.0), Host(id="h2"), Host(id="h9")], 1.0)
    kept = b.load("h0", 1.0)
    assert kept is not None and (kept.outstanding, kept.weight) == (2, 3.0)
    assert b.load("h1", 1.0) is None  # left: its state is gone
    assert b.load("h9", 1.0).outstanding == 0  # type: ignore[union-attr]
    b.update(pool(2), 2.0)  # h1 comes back: a new host, fresh state
    assert b.load("h1", 2.0).outstanding == 0  # type: ignore[union-attr]
    assert [h.id for h in b.hosts] == ["h0", "h1"]


@pytest.mark.parametrize("policy", POLICIES)
def test_finished_and_started_for_unknown_hosts_are_ignored(policy: str) -> None:
    b = balancer(policy, pool(2))
    b.started("gone", 0.0)
    b.finished("gone", 0.0, 0.01, True)
    b.finished("h0", 0.0, 0.01, True)  # more finishes than starts: stays at zero
    assert b.load("h0", 0.0).outstanding == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("latency", [-0.001, float("nan"), float("inf")])
def test_finished_rejects_impossible_latency(policy: str, latency: float) -> None:
    b = balancer(policy, pool(2))
    b.started("h0", 0.0)
    with pytest.raises(BalanceError, match="latency"):
        b.finished("h0", 0.0, latency, True)
    assert b.load("h0", 0.0).outstanding == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", POLICIES)
def test_bad_pool_changes_nothing(policy: str) -> None:
    b = balancer(policy, pool(2))
    with pytest.raises(BalanceError) as info:
        b.update([Host(id="x"), Host(id="y"), Host(id="x")], 1.0)
    assert info.value.field == "hosts[2].id"
    with pytest.raises(BalanceError, match=r"hosts\[1\]"):
        b.update([Host(id="x"), "y"], 1.0)  # type: ignore[list-item]
    assert [h.id for h in b.hosts] == ["h0", "h1"]
    assert {p for p in picks(b, 50)} <= {"h0", "h1"}


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_picks(policy: str) -> None:
    keys = [f"k{i}" for i in range(50)]

    def sequence(seed: int) -> list[str]:
        b = balancer(policy, pool(6), seed=seed)
        out = []
        for i, key in enumerate(keys):
            host = b.pick(float(i), key=key if i % 2 else None)
            assert host is not None
            b.started(host.id, float(i))
            if i % 3 == 0:
                b.finished(host.id, float(i) + 0.5, 0.5, i % 5 != 0)
            out.append(host.id)
        return out

    assert sequence(3) == sequence(3)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_host_gets_traffic(policy: str) -> None:
    b = balancer(policy, pool(5))
    assert set(picks(b, 500)) == {f"h{i}" for i in range(5)}


@pytest.mark.parametrize("policy", HASHED)
def test_hash_key_types(policy: str) -> None:
    b = balancer(policy, pool(5))
    assert b.pick(0.0, key="abc") == b.pick(0.0, key=b"abc")
    with pytest.raises(TypeError, match="str or bytes"):
        b.pick(0.0, key=12)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", [p for p in POLICIES if p not in HASHED])
def test_other_policies_ignore_the_key(policy: str) -> None:
    b = balancer(policy, pool(5))
    b.pick(0.0, key=12)  # type: ignore[arg-type]  # not even looked at


def test_load_reports_what_the_policy_knows() -> None:
    b = make_balancer("peak_ewma", random.Random(1))
    b.update(pool(2), 0.0)
    b.started("h0", 0.0)
    b.finished("h0", 0.0, 0.2, True)
    load = b.load("h0", 0.0)
    assert load == HostLoad(id="h0", outstanding=0, weight=1.0, latency=0.2, measured=True)
    assert b.load("nope", 0.0) is None
    assert balancer("round_robin", pool(1)).load("h0", 0.0).latency is None  # type: ignore[union-attr]
