"""The KV state machine's exceptions: one tree, each raised before anything is mutated.

    KvError
    +-- InvalidCommand (also a ValueError)   a command that can never be applied
    |   +-- LimitExceeded                    a key, value, txn or TTL over its limit
    +-- Compacted                            asked for history older than what is kept
    +-- FutureRevision                       asked for a revision the store has not reached
    +-- LeaseNotFound                        a lease id that is not granted (or was revoked)
    +-- LeaseExists                          a grant reusing a live lease id
    +-- NotPrimary                           a leader-local lease call on a non-leader table
    +-- SnapshotCorrupt                      snapshot bytes that do not decode

`InvalidCommand` is raised by a command's constructor; the rest by `KeyValueStore.apply`,
the reads, or the lease table. Because every check runs before the first mutation, a
raised error leaves the store exactly as it was, on every replica alike, so the node can
report the error to the proposer and carry on applying the log.
"""

from __future__ import annotations


class KvError(Exception):
    """Base of every error the KV state machine raises."""


class InvalidCommand(KvError, ValueError):
    """A command that is malformed whatever the store's state (empty key, bad TTL...)."""


class LimitExceeded(InvalidCommand):
    """A size limit was exceeded; carries which limit, its value and the actual size."""

    def __init__(self, what: str, limit_name: str, limit: int, actual: int) -> None:
        self.limit_name = limit_name
        self.limit = limit
        self.actual = actual
        super().__init__(f"{what} is {actual}, over the limit {limit_name} = {limit}")


class Compacted(KvError):
    """The requested revision is older than the kept history; the caller must re-list."""

    def __init__(self, revision: int, compacted_revision: int) -> None:
        self.revision = revision
        self.compacted_revision = compacted_revision
        super().__init__(
            f"revision {revision} has been compacted (compacted revision {compacted_revision})"
        )


class FutureRevision(KvError):
    """The requested revision is newer than the store's current revision."""

    def __init__(self, revision: int, current_revision: int) -> None:
        self.revision = revision
        self.current_revision = current_revision
        super().__init__(
            f"revision {revision} is in the future (current revision {current_revision})"
        )


class LeaseNotFound(KvError):
    """No lease with this id is granted."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"lease {lease_id} not found")


class LeaseExists(KvError):
    """A grant asked for an id that a live lease already has."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"lease {lease_id} already exists")


class NotPrimary(KvError):
    """Keep-alives are served only by the leader's (primary) lease table."""

    def __init__(self) -> None:
        super().__init__("lease keep-alive needs the leader (this lease table is not primary)")


class SnapshotCorrupt(KvError):
    """Snapshot bytes that are truncated, have a bad checksum or an unknown format."""
