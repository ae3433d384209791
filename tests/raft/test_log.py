"""The in-memory Raft log (shoal/raft/log.py): thesis 3.5 (append consistency check and
conflict truncation), 3.5's fast backtracking helper, and 5.1 (compaction/restore)."""

from __future__ import annotations

import pytest

from shoal.raft.errors import CompactedError
from shoal.raft.log import RaftLog
from shoal.raft.types import Entry, Snapshot


def entries(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term=t, index=start + i, data=b"%d" % (start + i)) for i, t in enumerate(terms)]


def positions(log: RaftLog) -> list[tuple[int, int]]:
    if log.last_index < log.first_index:
        return []
    return [(e.index, e.term) for e in log.slice(log.first_index, 1 << 40)]


def test_3_5_maybe_append_rejects_on_prev_mismatch() -> None:
    """Thesis 3.5: a follower refuses entries whose predecessor (index, term) it lacks."""
    log = RaftLog(Snapshot(), entries(1, 1, 2), commit=0)
    assert log.maybe_append(3, 1, 0, entries(3, start=4)) is None  # wrong prev term
    assert log.maybe_append(5, 2, 0, entries(3, start=6)) is None  # prev beyond the log
    assert positions(log) == [(1, 1), (2, 1), (3, 2)]


def test_3_5_maybe_append_truncates_conflicting_suffix() -> None:
    """Thesis 3.5: on the first entry whose term differs, the follower deletes it and all
    that follow, then appends the leader's; the stable pointer moves back before it."""
    log = RaftLog(Snapshot(), entries(1, 1, 2, 2, 2), commit=1)
    assert log.stabled == 5
    new = [Entry(term=3, index=4, data=b"x"), Entry(term=3, index=5, data=b"y")]
    result = log.maybe_append(3, 2, 4, new)
    assert result == (5, 4)  # last index matching the leader, first index replaced
    assert positions(log) == [(1, 1), (2, 1), (3, 2), (4, 3), (5, 3)]
    assert log.stabled == 3
    assert [e.data for e in log.unstable()] == [b"x", b"y"]
    assert log.committed == 4  # min(leader commit, last new index)


def test_3_5_maybe_append_ignores_already_present_entries() -> None:
    """Thesis 3.5: entries the follower already has (same index and term) are not
    rewritten, so a duplicated or reordered append cannot truncate newer entries."""
    log = RaftLog(Snapshot(), entries(1, 1, 1, 1), commit=0)
    assert log.maybe_append(1, 1, 2, entries(1, start=2)) == (2, 0)
    assert log.last_index == 4  # entries 3 and 4 survive the shorter, older append
    assert log.stabled == 4
    assert log.committed == 2


def test_3_5_maybe_append_refuses_to_replace_committed_entry() -> None:
    """Thesis 3.5 / 3.6.3 (state machine safety): replacing a committed entry means a
    broken leader; the log raises rather than comply."""
    log = RaftLog(Snapshot(), entries(1, 1, 1), commit=2)
    with pytest.raises(AssertionError, match="committed"):
        log.maybe_append(1, 1, 2, entries(2, start=2))


def test_3_5_find_conflict_by_term() -> None:
    """Thesis 3.5 (fast backtracking): the largest index <= i whose term is <= t."""
    log = RaftLog(Snapshot(), entries(1, 1, 3, 3, 3, 5, 5), commit=0)
    assert log.find_conflict_by_term(7, 5) == 7
    assert log.find_conflict_by_term(7, 4) == 5  # skips the whole term-5 run
    assert log.find_conflict_by_term(7, 2) == 2
    assert log.find_conflict_by_term(4, 3) == 4
    assert log.find_conflict_by_term(99, 3) == 5  # clamps to the last index
    assert log.find_conflict_by_term(7, 0) == 0
    snapped = RaftLog(Snapshot(index=4, term=3), entries(5, 5, start=5), commit=4)
    assert snapped.find_conflict_by_term(6, 4) == 4  # never below the snapshot


def test_3_5_is_up_to_date() -> None:
    """Thesis 3.6.1: later last term wins; with equal last terms, the longer log."""
    log = RaftLog(Snapshot(), entries(1, 2, 2), commit=0)
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(4, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(10, 1)


def test_3_5_slice_respects_byte_limit_but_returns_at_least_one() -> None:
    """Thesis 3.5 / 10.2.2 (batching, flow control): an append carries entries up to
    max_msg_bytes, but always at least one, so an oversized entry still moves."""
    big = [Entry(term=1, index=i, data=b"x" * 100) for i in range(1, 6)]  # 116 bytes each
    log = RaftLog(Snapshot(), big, commit=0)
    assert [e.index for e in log.slice(1, 1)] == [1]
    assert [e.index for e in log.slice(1, 116)] == [1]
    assert [e.index for e in log.slice(1, 232)] == [1, 2]
    assert [e.index for e in log.slice(2, 347)] == [2, 3]
    assert [e.index for e in log.slice(4, 1 << 20)] == [4, 5]
    assert log.slice(6, 1 << 20) == ()


def test_5_1_compact_keeps_later_entries_and_refuses_unapplied() -> None:
    """Thesis 5.1: compaction replaces the applied prefix with a snapshot; entries after
    it remain readable, those at or below it raise CompactedError."""
    log = RaftLog(Snapshot(), entries(1, 1, 2, 2, 3), commit=5)
    with pytest.raises(ValueError, match="beyond applied"):
        log.compact(Snapshot(index=3, term=2))  # nothing applied yet
    log.applied_to(4)
    log.compact(Snapshot(index=3, term=2, data=b"s"))
    assert (log.first_index, log.last_index) == (4, 5)
    assert log.term(3) == 2 and log.term(2) is None
    assert positions(log) == [(4, 2), (5, 3)]
    with pytest.raises(CompactedError):
        log.slice(3, 100)
    with pytest.raises(CompactedError):
        log.entry(2)
    log.compact(Snapshot(index=2, term=1))  # an older snapshot changes nothing
    assert log.snapshot.index == 3


def test_5_1_restore_replaces_everything_with_snapshot() -> None:
    """Thesis 5.1 (InstallSnapshot): a follower discards its log for the leader's
    snapshot; all pointers jump to the snapshot and it is handed out to the driver."""
    log = RaftLog(Snapshot(), entries(1, 1, 2), commit=1)
    snap = Snapshot(index=10, term=4, data=b"state")
    log.restore(snap)
    assert (log.first_index, log.last_index, log.last_term) == (11, 10, 4)
    assert log.committed == log.applied == log.stabled == 10
    assert log.pending_snapshot is snap
    assert log.unstable() == () and log.next_to_apply() == ()
    result = log.maybe_append(10, 4, 11, entries(4, start=11))
    assert result is not None and result[0] == 11
    assert log.committed == 11
    assert [e.index for e in log.next_to_apply()] == [11]


def test_3_5_log_rejects_non_contiguous_start() -> None:
    """Thesis 3.5 (Log Matching relies on contiguous logs): a log that does not follow its
    snapshot, or a commit index past its end, is refused at construction."""
    with pytest.raises(ValueError, match="not contiguous"):
        RaftLog(Snapshot(index=2, term=1), entries(1, start=4), commit=0)
    with pytest.raises(ValueError, match="beyond the last index"):
        RaftLog(Snapshot(), entries(1), commit=2)
