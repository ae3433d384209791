"""Who owns an active check: rendezvous hashing over the roster, and the roster's codec."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from shoal.registry import check_owner, encode_roster, instance_key, parse_roster

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
rosters = st.lists(names, min_size=1, max_size=7, unique=True)
keys = st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=50, unique=True)


@given(rosters, keys)
def test_every_key_has_exactly_one_owner_from_the_roster(roster: list[str], ks: list[str]) -> None:
    for key in ks:
        # Each member decides alone, holding the roster in its own order.
        claims = [m for i, m in enumerate(roster) if check_owner(key, roster[i:] + roster[:i]) == m]
        assert len(claims) == 1 and claims[0] == check_owner(key, roster)


@given(rosters, keys, st.randoms(use_true_random=False))
def test_the_owner_does_not_depend_on_roster_order(
    roster: list[str], ks: list[str], rng: random.Random
) -> None:
    shuffled = list(roster)
    rng.shuffle(shuffled)
    assert [check_owner(k, roster) for k in ks] == [check_owner(k, shuffled) for k in ks]


@given(rosters.filter(lambda r: len(r) >= 2), keys, st.data())
def test_removing_a_member_moves_only_that_members_keys(
    roster: list[str], ks: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(roster))
    rest = [m for m in roster if m != gone]
    for key in ks:
        before, after = check_owner(key, roster), check_owner(key, rest)
        if before != gone:
            assert after == before  # a survivor keeps every check it had
        else:
            assert after in rest


@given(rosters, keys, names)
def test_adding_a_member_moves_keys_only_to_it(roster: list[str], ks: list[str], new: str) -> None:
    grown = [*roster, new] if new not in roster else roster
    for key in ks:
        after = check_owner(key, grown)
        assert after == check_owner(key, roster) or after == new


def test_no_members_no_owner() -> None:
    assert check_owner("/registry/services/a/instances/1", []) is None


def test_str_and_bytes_keys_agree() -> None:
    key = instance_key("web", "w1")
    assert check_owner(key, ["n1", "n2", "n3"]) == check_owner(key.encode(), ["n1", "n2", "n3"])


def test_spread_is_roughly_even_and_takeover_is_spread_too() -> None:
    roster = ["n1", "n2", "n3"]
    ks = [instance_key(f"svc{i % 7}", f"i{i}") for i in range(3000)]
    owners = Counter(check_owner(k, roster) for k in ks)
    assert set(owners) == set(roster)
    assert all(800 <= n <= 1200 for n in owners.values()), owners  # 1000 each, +-20 %
    # n1 dies: its keys go to both survivors, not all to one.
    moved = Counter(check_owner(k, ["n2", "n3"]) for k in ks if check_owner(k, roster) == "n1")
    assert all(n >= 0.3 * owners["n1"] for n in moved.values()) and len(moved) == 2, moved


def test_owner_is_stable_across_processes() -> None:
    """The whole point: separate processes agree (Python's hash() is salted per process)."""
    ks = [instance_key("web", f"w{i}") for i in range(20)]
    code = (
        "from shoal.registry import check_owner, instance_key\n"
        "print(','.join(check_owner(instance_key('web', f'w{i}'), ['n1','n2','n3'])"
        " for i in range(20)))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        assert out.split(",") == [check_owner(k, ["n1", "n2", "n3"]) for k in ks]


@given(st.lists(names, max_size=7))
def test_roster_round_trips_sorted_and_deduplicated(roster: list[str]) -> None:
    encoded = encode_roster(roster)
    assert parse_roster(encoded) == tuple(sorted(set(roster)))
    assert encode_roster(reversed(roster)) == encoded  # equal sets are equal bytes


def test_unreadable_roster_is_none() -> None:
    for bad in (b"", b"{", b'{"n1": 1}', b"[1, 2]", b'[""]', b'"n1"'):
        assert parse_roster(bad) is None
