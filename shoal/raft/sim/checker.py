"""The safety properties the simulator checks after every step, as one incremental observer.

- Election safety: at most one leader per term (thesis 3.6.3 property 1).
- Log matching: an (index, term) pair names one entry and one predecessor term, wherever
  it is durable; by induction the prefixes match too.
- Leader completeness: a new leader holds every entry anyone has applied.
- State machine safety: no two members apply different entries at one index, and each
  member applies a gap-free sequence (so applied sequences are prefixes of one another).
- Durability: no acknowledged write is missing from any member at the end.
- Linearizable reads: a ReadIndex is at least the index of every write acknowledged before
  the read began.

Each check raises `Violation` with a readable message; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import ConfChange, Entry, Snapshot


class Violation(Exception):
    """A Raft safety or liveness property failed in a simulation."""


def _digest(entry: Entry) -> tuple[bytes, ConfChange | None]:
    return (entry.data, entry.change)


@dataclass(slots=True)
class SafetyChecker:
    leaders: dict[int, str] = field(default_factory=dict)
    # (index, term) -> (entry digest, predecessor's term), for log matching.
    _entries: dict[tuple[int, int], tuple[tuple[bytes, ConfChange | None], int | None]] = field(
        default_factory=dict
    )
    applied: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # index -> (term, data)
    last_applied: dict[str, int] = field(default_factory=dict)
    acked: dict[bytes, int] = field(default_factory=dict)  # write value -> its index
    max_acked_index: int = 0
    reads_checked: int = 0

    def on_leader(self, member: str, term: int, log_terms: dict[int, int], first: int) -> None:
        holder = self.leaders.setdefault(term, member)
        if holder != member:
            raise Violation(f"election safety: {holder} and {member} both lead term {term}")
        for index, (term_at, _) in self.applied.items():
            if index < first:
                continue  # inside the leader's snapshot, which holds applied state
            if log_terms.get(index) != term_at:
                raise Violation(
                    f"leader completeness: new leader {member} (term {term}) lacks applied "
                    f"entry {index} of term {term_at} (has term {log_terms.get(index)})"
                )

    def on_persist(self, member: str, entries: tuple[Entry, ...], prev_term: int | None) -> None:
        for entry in entries:
            key = (entry.index, entry.term)
            seen = self._entries.setdefault(key, (_digest(entry), prev_term))
            if seen != (_digest(entry), prev_term):
                raise Violation(
                    f"log matching: {member} holds a different entry or predecessor at "
                    f"index {entry.index} term {entry.term}"
                )
            prev_term = entry.term

    def on_apply(self, member: str, entry: Entry) -> None:
        last = self.last_applied.get(member, 0)
        if entry.index != last + 1:
            raise Violation(f"{member} applied index {entry.index} after {last} (gap or repeat)")
        self.last_applied[member] = entry.index
        known = self.applied.setdefault(entry.index, (entry.term, entry.data))
        if known != (entry.term, entry.data):
            raise Violation(
                f"state machine safety: {member} applied term {entry.term} {entry.data!r} at "
                f"index {entry.index}, another member applied term {known[0]} {known[1]!r}"
            )

    def on_restore(self, member: str, snapshot: Snapshot, state: list[tuple[int, bytes]]) -> None:
        for index, data in state:
            known = self.applied.get(index)
            if known is not None and known[1] != data:
                raise Violation(
                    f"state machine safety: {member} installed a snapshot with {data!r} at "
                    f"index {index}, another member applied {known[1]!r}"
                )
        self.last_applied[member] = snapshot.index

    def on_restart(self, member: str, snapshot_index: int) -> None:
        self.last_applied[member] = snapshot_index

    def on_ack(self, value: bytes, index: int) -> None:
        self.acked[value] = index
        self.max_acked_index = max(self.max_acked_index, index)

    def on_read(self, member: str, read_index: int, acked_before: int) -> None:
        self.reads_checked += 1
        if read_index < acked_before:
            raise Violation(
                f"linearizable read: {member} served read index {read_index}, but a write at "
                f"index {acked_before} was acknowledged before the read began"
            )

    def check_durable(self, member: str, state: list[tuple[int, bytes]]) -> None:
        held = {data for _, data in state}
        for value, index in self.acked.items():
            if value not in held:
                raise Violation(
                    f"durability: acknowledged write {value!r} (index {index}) missing on {member}"
                )
