"""Majority arithmetic over a set of voters. Pure; iteration order never matters here."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(voter_count: int) -> int:
    return voter_count // 2 + 1


def majority_value(voters: Iterable[str], value_of: Callable[[str], int]) -> int:
    """The largest value that a majority of voters have reached (0 with no voters).

    Used for the commit index (value = match index) and for ReadIndex rounds (value = the
    newest confirmation round a voter acknowledged).
    """
    values = sorted((value_of(v) for v in voters), reverse=True)
    if not values:
        return 0
    return values[quorum_size(len(values)) - 1]


def vote_result(voters: Iterable[str], votes: Mapping[str, bool]) -> VoteResult:
    voters = list(voters)
    if not voters:
        return VoteResult.LOST
    need = quorum_size(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[str], alive: Callable[[str], bool]) -> bool:
    voters = list(voters)
    return bool(voters) and sum(1 for v in voters if alive(v)) >= quorum_size(len(voters))
