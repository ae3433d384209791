"""Majority arithmetic (thesis 3.4 votes, 3.5 commitment, 6.4 read rounds) against naive
reference definitions, by property-based testing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shoal.raft.quorum import VoteResult, has_quorum, majority_value, quorum_size, vote_result

VOTERS = st.lists(st.sampled_from([f"n{i}" for i in range(1, 10)]), unique=True, max_size=9)


def naive_majority_value(values: dict[str, int]) -> int:
    """The largest v such that more than half of the voters have a value >= v."""
    if not values:
        return 0
    candidates = {0, *values.values()}
    return max(v for v in candidates if 2 * sum(1 for x in values.values() if x >= v) > len(values))


def naive_vote_result(voters: list[str], votes: dict[str, bool]) -> VoteResult:
    if not voters:
        return VoteResult.LOST
    yes = sum(1 for v in voters if votes.get(v) is True)
    undecided = sum(1 for v in voters if v not in votes)
    if 2 * yes > len(voters):
        return VoteResult.WON
    if 2 * (yes + undecided) > len(voters):
        return VoteResult.PENDING
    return VoteResult.LOST


@given(VOTERS.flatmap(lambda vs: st.fixed_dictionaries({v: st.integers(0, 20) for v in vs})))
def test_3_5_majority_value_matches_naive_definition(values: dict[str, int]) -> None:
    """Thesis 3.5: the commit index is the largest index stored on a majority."""
    assert majority_value(list(values), values.__getitem__) == naive_majority_value(values)
    # Order of the voters never matters.
    assert majority_value(sorted(values, reverse=True), values.__getitem__) == (
        naive_majority_value(values)
    )


@given(
    VOTERS.flatmap(
        lambda vs: st.tuples(
            st.just(vs),
            st.dictionaries(st.sampled_from([*vs, "outsider"]), st.booleans()),
        )
    )
)
def test_3_4_vote_result_matches_naive_definition(
    case: tuple[list[str], dict[str, bool]],
) -> None:
    """Thesis 3.4: a candidate wins with a majority of the voters' votes, loses once a
    majority is out of reach; votes from non-voters never count."""
    voters, votes = case
    assert vote_result(voters, votes) is naive_vote_result(voters, votes)


@given(VOTERS, st.data())
def test_6_2_has_quorum_matches_naive_definition(voters: list[str], data: st.DataObject) -> None:
    """Thesis 6.2 (CheckQuorum): a majority of voters active."""
    alive = set(
        data.draw(st.lists(st.sampled_from(voters), unique=True) if voters else st.just([]))
    )
    expected = bool(voters) and 2 * len(alive) > len(voters)
    assert has_quorum(voters, alive.__contains__) is expected


def test_3_4_quorum_sizes() -> None:
    """Thesis 3.4: a majority of n is floor(n/2) + 1."""
    assert [quorum_size(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
