"""Whether a membership change would leave the cluster able to reach a quorum.

Theory of operation (etcd's strict reconfiguration check). Raft applies a configuration
from the moment its entry is in the log, so a change that makes the quorum unreachable
takes effect before it could ever commit -- and then nothing commits again, not even
the change that would undo it. The classic case: a voter at an unreachable address
added to a cluster of one needs two votes for every commit and only one member answers.

So the leader refuses a change unless, in the configuration it produces, a quorum of
voters is reachable now: voters the leader heard from within the last election timeout,
itself included. A member not yet in the cluster counts as unreachable (nobody has heard
from it): a new member joins as a learner first and is promoted once it has caught up,
which proves it is up. Adding a learner never changes the quorum and is always allowed.

Pure: the caller passes the configuration and the set it has heard from. No I/O.
"""

from __future__ import annotations

from ..raft import ConfChangeOp


def quorum(voters: int) -> int:
    return voters // 2 + 1


def refusal(
    op: ConfChangeOp,
    name: str,
    voters: frozenset[str],
    learners: frozenset[str],
    reachable: frozenset[str],
) -> str | None:
    """Why the change `op` of member `name` must be refused, or None if it is safe."""
    if op is ConfChangeOp.ADD_LEARNER:
        return None
    if op is ConfChangeOp.REMOVE:
        if name not in voters:
            return None  # a learner (or nobody): the quorum does not change
        after = voters - {name}
        if not after:
            return f"removing {name} would leave the cluster without a voter"
    else:
        after = voters | {name}
    live = after & reachable
    if len(live) >= quorum(len(after)):
        return None
    missing = sorted(after - reachable)
    verb = "removing" if op is ConfChangeOp.REMOVE else "adding"
    kind = "learner" if name in learners else "voter"
    advice = ""
    if op is not ConfChangeOp.REMOVE and name not in voters | learners:
        advice = "; add it as a learner first (it can be promoted once it has caught up)"
    elif op is not ConfChangeOp.REMOVE:
        advice = "; promote it once the leader hears from it"
    return (
        f"{verb} {kind} {name} would leave {len(after)} voters, which need "
        f"{quorum(len(after))} reachable for a quorum, but only {len(live)} are "
        f"(not reachable: {', '.join(missing)}){advice}"
    )


__all__ = ["quorum", "refusal"]
