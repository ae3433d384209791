"""Who consumes which partition: the same answer everywhere, fair shares, few moves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shoal.events.assignment import assign, plan

MEMBERS = st.lists(
    st.text("abcdef0123", min_size=1, max_size=6), min_size=1, max_size=6, unique=True
)


@given(MEMBERS, st.integers(1, 64))
def test_every_partition_has_one_member_and_nobody_more_than_a_share(
    members: list[str], n: int
) -> None:
    owners = assign(members, n)
    assert sorted(owners) == list(range(n))
    share = -(-n // len(members))
    for m in members:
        assert sum(1 for o in owners.values() if o == m) <= share
    assert assign(list(reversed(members)), n) == owners  # order of discovery is irrelevant


@given(MEMBERS, st.integers(1, 16))
def test_a_claimed_partition_is_never_taken_only_handed_back(members: list[str], n: int) -> None:
    me = members[0]
    others = members[1:] or ["zz"]
    claims = {p: others[p % len(others)] for p in range(n)}
    moves = plan(me, members, claims, owned=(), partitions=n)
    assert moves.claim == () and moves.revoke == () and moves.lost == ()


def test_moves_from_what_is_owned_to_what_is_wanted() -> None:
    wanted = assign(["a", "b"], 8)
    mine = [p for p, m in wanted.items() if m == "a"]
    theirs = [p for p, m in wanted.items() if m == "b"]
    # a owns everything; b just joined and holds nothing yet
    moves = plan("a", ["a", "b"], dict.fromkeys(range(8), "a"), owned=range(8), partitions=8)
    assert sorted(moves.revoke) == theirs and moves.claim == () and moves.lost == ()
    # b sees its partitions still claimed by a: it waits; once free, it claims them
    assert plan("b", ["a", "b"], dict.fromkeys(range(8), "a"), (), 8).claim == ()
    free = {p: "a" for p in mine}
    assert sorted(plan("b", ["a", "b"], free, (), 8).claim) == theirs
    # a claim the store says is someone else's is lost; one that is ours is adopted
    moves = plan("a", ["a", "b"], {mine[0]: "b", theirs[0]: "a"}, owned=[mine[0]], partitions=8)
    assert moves.lost == (mine[0],) and moves.adopt == (theirs[0],)
