"""Deliberate bugs, each a classic Raft mistake, that the simulator must catch.

`inject(name)` is a context manager that swaps one method of the core for a broken
version and restores it on exit. It exists to prove the checker can fail: a simulator
that never reports a violation, even for these, checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..log import RaftLog
from ..raft import Raft


def _commit_old_terms(self: Raft) -> bool:
    # Bug: counts replicas for entries of earlier terms too (thesis figure 3.7).
    def match_of(voter: str) -> int:
        pr = self.progress.get(voter)
        return pr.match if pr is not None else 0

    from ..quorum import majority_value

    index = majority_value(self._voters(), match_of)
    if index <= self.log.committed:
        return False
    self.log.commit_to(index)
    self._on_commit_advanced()
    return True


def _any_log_is_up_to_date(self: RaftLog, last_index: int, last_term: int) -> bool:
    return True  # Bug: votes ignore how complete the candidate's log is.


def _read_without_quorum(self: Raft, context: bytes, requester: str) -> None:
    # Bug: serves the read from the local commit index without confirming leadership.
    self._pending_reads.clear()
    if requester == self.id:
        from ..types import ReadState

        self.read_states.append(ReadState(self.log.committed, context))


def _vote_twice(self: Raft, m: Any) -> None:
    # Bug: forgets whom it voted for, so it can vote for two candidates in one term.
    self.vote = None
    ORIGINALS["vote-twice"](self, m)


BUGS: dict[str, tuple[type, str, Callable[..., Any]]] = {
    "old-term-commit": (Raft, "_maybe_commit", _commit_old_terms),
    "vote-any-log": (RaftLog, "is_up_to_date", _any_log_is_up_to_date),
    "read-without-quorum": (Raft, "_leader_read", _read_without_quorum),
    "vote-twice": (Raft, "_handle_vote_request", _vote_twice),
}
ORIGINALS: dict[str, Callable[..., Any]] = {
    name: getattr(cls, attr) for name, (cls, attr, _) in BUGS.items()
}


@contextmanager
def inject(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    if name not in BUGS:
        raise ValueError(f"unknown bug {name!r}; choose from {', '.join(sorted(BUGS))}")
    cls, attr, broken = BUGS[name]
    setattr(cls, attr, broken)
    try:
        yield
    finally:
        setattr(cls, attr, ORIGINALS[name])


__all__ = ["BUGS", "inject"]
