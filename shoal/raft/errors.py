"""The Raft core's exceptions: one tree, raised only for a caller's request that cannot be met.

    RaftError
    +-- ProposalRejected          a proposal or request this member cannot accept now
    |   +-- NotLeader             carries `leader_hint` (None when no leader is known)
    |   +-- TransferInProgress    proposals pause while leadership moves
    |   +-- ConfChangeRejected    another change is pending, or the change is invalid
    +-- CompactedError            asked for log entries that a snapshot replaced
    +-- UsageError                the caller broke the Ready/advance contract (a bug)

Messages from peers never raise: a malformed or stale message is dropped, since a peer's
bad behaviour must not crash this member.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error the Raft core raises."""


class ProposalRejected(RaftError):
    """This member cannot accept the request now; the caller may retry elsewhere or later."""


class NotLeader(ProposalRejected):
    """Only the leader accepts this request; `leader_hint` names the leader if known."""

    def __init__(self, leader_hint: str | None) -> None:
        self.leader_hint = leader_hint
        where = f"the leader is {leader_hint}" if leader_hint else "no leader is known"
        super().__init__(f"not the leader ({where})")


class TransferInProgress(ProposalRejected):
    """Leadership is moving to another member; proposals resume on the new leader."""

    def __init__(self, transferee: str) -> None:
        self.transferee = transferee
        super().__init__(f"leadership transfer to {transferee} in progress")


class ConfChangeRejected(ProposalRejected):
    """A membership change that cannot be proposed now, with the reason."""


class CompactedError(RaftError):
    """The requested index lies at or below the last snapshot."""


class UsageError(RaftError):
    """The caller broke the driving contract (for example `ready()` twice without `advance`)."""
