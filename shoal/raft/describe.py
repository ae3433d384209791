"""Deterministic one-line text for the Raft core's values: entries, messages, Readys, status.

Theory of operation. Every function maps a value to text and does nothing else: no I/O,
no clock, no dependence on hash order (sets are sorted, dicts are sorted by key). The same
value always reads the same, so the text can be kept as a golden transcript
(tests/raft/testdata/) and diffed when the protocol's behaviour changes, and a driver may
log it to show what it is doing.

Conventions (after etcd-io/raft's `DescribeMessage` / `DescribeReady`):

- A log position is `term/index`: `2/12` is the entry at index 12 of term 2.
- An entry is its position and what it holds: `noop` (a new leader's empty entry),
  quoted bytes (`"x=1"`; non-printable bytes as `\\xNN`, long data cut with its length),
  or `conf add-learner n4 -> voters=(n1,n2,n3) learners=(n4)`.
- A message is `src->dst Type term=T` followed by its fields; flags (`pre`, `transfer`,
  `granted`, `rejected`) are bare words; zero-valued optional fields are left out.
- A Ready lists only its non-empty parts, each under the name of its `Ready` field.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import singledispatch

from .messages import (
    AppendEntries,
    AppendResponse,
    Commit,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .rawnode import Ready, Status
from .types import ConfState, Entry, HardState, ReadState, Snapshot, SoftState

# Data longer than this is cut, with its length, so one huge entry cannot flood a trace.
MAX_DATA_SHOWN = 48


def _char(b: int) -> str:
    if b in b'"\\':
        return "\\" + chr(b)
    if 0x20 <= b < 0x7F:
        return chr(b)
    return f"\\x{b:02x}"


def describe_data(data: bytes) -> str:
    """Bytes as a double-quoted string: printable ASCII as is, `"` and `\\` escaped, every
    other byte as `\\xNN`; past MAX_DATA_SHOWN bytes, cut and followed by the length."""
    text = "".join(_char(b) for b in data[:MAX_DATA_SHOWN])
    if len(data) > MAX_DATA_SHOWN:
        return f'"{text}"...({len(data)} bytes)'
    return f'"{text}"'


def _ids(members: Iterable[str]) -> str:
    return "(" + ",".join(sorted(members)) + ")"


def describe_conf(conf: ConfState) -> str:
    return f"voters={_ids(conf.voters)} learners={_ids(conf.learners)}"


def describe_entry(entry: Entry) -> str:
    where = f"{entry.term}/{entry.index}"
    change = entry.change
    if change is not None:
        text = f"{where} conf {change.op.value} {change.node} -> {describe_conf(change.result)}"
        if change.context:
            text += f" context={describe_data(change.context)}"
        return text
    if not entry.data:
        return f"{where} noop"
    return f"{where} {describe_data(entry.data)}"


def describe_entries(entries: Iterable[Entry]) -> str:
    """One entry per line (no trailing newline)."""
    return "\n".join(describe_entry(e) for e in entries)


def describe_snapshot(snap: Snapshot) -> str:
    text = f"{snap.term}/{snap.index} {describe_conf(snap.conf)}"
    if snap.data:
        text += f" data={describe_data(snap.data)}"
    return text


def describe_hard_state(hs: HardState) -> str:
    return f"term={hs.term} vote={hs.vote or 'none'} commit={hs.commit}"


def describe_soft_state(ss: SoftState) -> str:
    return f"leader={ss.leader or 'none'} role={ss.role.value} term={ss.term}"


def describe_read_state(rs: ReadState) -> str:
    return f"index={rs.index} context={describe_data(rs.context)}"


# -- messages: one describer per type, registered by type -------------------------------


@singledispatch
def _fields(m: Message) -> str:
    # A new message type must say how it reads; it cannot silently go undescribed.
    raise TypeError(f"no description for message type {type(m).__name__}")


@_fields.register
def _(m: AppendEntries) -> str:
    text = f"log={m.prev_term}/{m.prev_index} commit={m.commit}"
    if m.entries:
        text += " entries=[" + ", ".join(describe_entry(e) for e in m.entries) + "]"
    return text


@_fields.register
def _(m: AppendResponse) -> str:
    if m.reject:
        return f"index={m.index} rejected hint={m.hint_term}/{m.hint_index}"
    return f"index={m.index}"


@_fields.register
def _(m: RequestVote) -> str:
    return f"log={m.last_term}/{m.last_index}" + " pre" * m.pre + " transfer" * m.transfer


@_fields.register
def _(m: VoteResponse) -> str:
    return ("granted" if m.granted else "rejected") + " pre" * m.pre


@_fields.register
def _(m: Heartbeat) -> str:
    return f"commit={m.commit}" + (f" read_seq={m.read_seq}" if m.read_seq else "")


@_fields.register
def _(m: Commit) -> str:
    return f"commit={m.commit}"


@_fields.register
def _(m: HeartbeatResponse) -> str:
    return f"read_seq={m.read_seq}" if m.read_seq else ""


@_fields.register
def _(m: InstallSnapshot) -> str:
    return f"snapshot={describe_snapshot(m.snapshot)}"


@_fields.register
def _(m: TimeoutNow) -> str:
    return ""


@_fields.register
def _(m: ReadIndexRequest) -> str:
    return f"context={describe_data(m.context)}"


@_fields.register
def _(m: ReadIndexResponse) -> str:
    return f"index={m.index} context={describe_data(m.context)}"


def describe_message(m: Message) -> str:
    """`src->dst Type term=T fields...` (see the conventions above)."""
    fields = _fields(m)
    head = f"{m.src}->{m.dst} {type(m).__name__} term={m.term}"
    return f"{head} {fields}" if fields else head


# -- Ready and Status ----------------------------------------------------------------------


def _section(title: str, lines: Iterable[str]) -> list[str]:
    body = list(lines)
    return [f"{title}:", *body] if body else []


def describe_ready(rd: Ready) -> str:
    """Every non-empty part of a Ready, in the order the driver handles them."""
    lines = [f"Ready must_sync={str(rd.must_sync).lower()}:"]
    if rd.soft_state is not None:
        lines.append(f"SoftState {describe_soft_state(rd.soft_state)}")
    if rd.hard_state is not None:
        lines.append(f"HardState {describe_hard_state(rd.hard_state)}")
    if rd.snapshot is not None:
        lines.append(f"Snapshot {describe_snapshot(rd.snapshot)}")
    lines += _section("Entries", map(describe_entry, rd.entries))
    lines += _section("Messages", map(describe_message, rd.messages))
    lines += _section("PersistedMessages", map(describe_message, rd.persisted_messages))
    lines += _section("CommittedEntries", map(describe_entry, rd.committed_entries))
    lines += _section("ReadStates", map(describe_read_state, rd.read_states))
    return "\n".join(lines)


def describe_status(st: Status) -> str:
    """The member's own view, then (on a leader) one line per member's progress."""
    lines = [
        f"{st.id} {st.role.value} term={st.term} leader={st.leader or 'none'} "
        f"commit={st.commit} applied={st.applied} last={st.last_index} {describe_conf(st.conf)}"
    ]
    for member in sorted(st.progress):
        pr = st.progress[member]
        lines.append(f"{member}: {pr.state.value} match={pr.match} next={pr.next}")
    return "\n".join(lines)
