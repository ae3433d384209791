"""`RawNode.recently_active`: the leader's read-only view of who answered in the current
CheckQuorum round (thesis 6.2), from which the driver derives which members are alive."""

from __future__ import annotations

from .harness import Cluster


def test_leader_sees_who_answers_and_forgets_a_crashed_member_within_two_rounds() -> None:
    c = Cluster(3, seed=5)
    c.elect("n1")
    c.run(12)  # a full round with everyone answering
    assert c.node("n1").recently_active() == {"n1", "n2", "n3"}
    assert c.node("n2").recently_active() == frozenset()  # only a leader knows
    c.crash("n3")
    c.run(2 * 10)  # two election timeouts: at least one whole round without n3
    assert c.node("n1").recently_active() == {"n1", "n2"}
    c.restart("n3")
    c.run(2)  # one heartbeat answered is enough to count again
    assert c.node("n1").recently_active() == {"n1", "n2", "n3"}
