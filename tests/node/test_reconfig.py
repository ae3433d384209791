"""The strict reconfiguration check (node/reconfig.py): a change is refused exactly when
the configuration it produces has no quorum of reachable voters."""

from __future__ import annotations

import itertools

from shoal.node.reconfig import quorum, refusal
from shoal.raft import ConfChangeOp

ADD, REMOVE, LEARNER = ConfChangeOp.ADD_VOTER, ConfChangeOp.REMOVE, ConfChangeOp.ADD_LEARNER


def test_a_new_voter_cannot_join_a_cluster_of_one_directly() -> None:
    reason = refusal(ADD, "n2", frozenset({"n1"}), frozenset(), frozenset({"n1"}))
    assert reason is not None and "learner first" in reason and "n2" in reason
    assert refusal(LEARNER, "n2", frozenset({"n1"}), frozenset(), frozenset({"n1"})) is None


def test_a_learner_the_leader_hears_from_may_be_promoted() -> None:
    voters, learners = frozenset({"n1"}), frozenset({"n2"})
    assert refusal(ADD, "n2", voters, learners, frozenset({"n1", "n2"})) is None
    reason = refusal(ADD, "n2", voters, learners, frozenset({"n1"}))
    assert reason is not None and "promote it once" in reason


def test_removing_the_last_voter_or_a_live_one_beside_a_dead_one_is_refused() -> None:
    assert "without a voter" in (
        refusal(REMOVE, "n1", frozenset({"n1"}), frozenset(), frozenset({"n1"})) or ""
    )
    voters = frozenset({"n1", "n2", "n3"})
    reason = refusal(REMOVE, "n2", voters, frozenset(), frozenset({"n1", "n2"}))
    assert reason is not None and "n3" in reason
    assert refusal(REMOVE, "n3", voters, frozenset(), frozenset({"n1", "n2"})) is None
    assert refusal(REMOVE, "x", voters, frozenset({"x"}), frozenset({"n1"})) is None


def test_the_rule_is_a_reachable_quorum_of_the_result_for_every_small_case() -> None:
    names = ["a", "b", "c", "d", "e"]
    for n in range(1, 5):
        voters = frozenset(names[:n])
        for k in range(n + 1):
            for reachable in map(frozenset, itertools.combinations(names, k)):
                for op, name in [(ADD, "e"), *((REMOVE, v) for v in voters)]:
                    after = voters | {name} if op is ADD else voters - {name}
                    ok = bool(after) and len(after & reachable) >= quorum(len(after))
                    assert (refusal(op, name, voters, frozenset(), reachable) is None) == ok
