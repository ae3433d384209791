"""The leader's periodic duties, decided without I/O: `leader_duties(now, kv, status, config)`.

Theory of operation. After every tick the member's loop (member.py) asks what its leader
should do now and carries out the answer. The decision reads only what it is given: the
time as `now`, the applied KV store (read, never changed) and a `LeaderStatus` -- the
Raft status and the loop's bookkeeping (how long it has led, when it last heard from
each voter, which revokes and roster writes are in flight). It returns duties, in the
order the loop proposes them:

- `RevokeLease`: the lease's leader-local expiry has passed (kv/leases.py). At most
  `max_revokes` per tick, soonest first, none already in flight: a mass expiry is spread
  over ticks.
- `PromoteLearner`: a learner that joined to become a voter has caught up (match >=
  commit). One at a time: Raft takes one membership change at a time.
- `PublishRoster`: the live voters (heard within two election timeouts) differ from the
  roster stored at `CHECKERS_KEY`, the members that run active health checks
  (health.py). Only after two election timeouts in office, so a new leader never drops
  a member it simply has not heard from yet; never while a write is in flight; never
  for a lone voter that has no roster (without one, the leader checks everything).
- `ReportLeases`: once per election timeout in office. The loop proposes the remaining
  TTLs of the leases kept alive since the last report (`LeaseTable.checkpoints`, which
  forgets what it reports -- so the loop, not this module, reads them).
- `CompactHistory`: history holds over twice `keep_revisions` revisions and
  `compact_every` seconds have passed since the last compaction: compact to
  `revision - keep_revisions`.

`reachable` is the same view of liveness for membership changes (reconfig.py): whom the
leader heard from within one election timeout, or, before its first CheckQuorum round
has ended, the peers that acknowledged an append of its term.

Rules: no I/O, no clock, no randomness, no mutation of the store or the status (tests
compare a snapshot of the store before and after); not leader, no duties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..kv import KeyValueStore
from ..raft import Role, Status
from ..registry import encode_roster

CHECKERS_KEY = b"/_shoal/checkers"  # JSON list of the live voters that run health checks


@dataclass(frozen=True, slots=True, kw_only=True)
class DutyConfig:
    """The member's settings the duties depend on."""

    name: str  # this member
    election_ticks: int
    tick_seconds: float
    keep_revisions: int  # history kept for watches and reads at old revisions
    compact_every: float = 60.0  # seconds between compactions at most
    max_revokes: int = 64  # lease revokes proposed per tick at most

    def __post_init__(self) -> None:
        if self.election_ticks < 1 or self.tick_seconds <= 0:
            raise ValueError("election_ticks must be >= 1 and tick_seconds > 0")
        if self.keep_revisions < 1 or self.max_revokes < 1 or self.compact_every < 0:
            raise ValueError("keep_revisions and max_revokes >= 1, compact_every >= 0")

    @property
    def election_timeout(self) -> float:
        return self.election_ticks * self.tick_seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderStatus:
    """What the loop knows besides the store, as of this tick."""

    raft: Status
    ticks: int  # ticks led in this term, this one included (1 at the first)
    heard: Mapping[str, float]  # when each voter last answered (CheckQuorum activity)
    first_seen: Mapping[str, float]  # when this leader first saw each voter in its config
    revoking: frozenset[int] = frozenset()  # revokes proposed and not settled
    promoting: frozenset[str] = frozenset()  # learners that joined to become voters
    roster_pending: bool = False  # a roster write proposed and not settled
    last_compaction: float = 0.0  # when history was last compacted (or the member started)


@dataclass(frozen=True, slots=True)
class RevokeLease:
    lease_id: int


@dataclass(frozen=True, slots=True)
class PromoteLearner:
    name: str


@dataclass(frozen=True, slots=True)
class PublishRoster:
    live: tuple[str, ...]  # sorted
    value: bytes  # what to put at CHECKERS_KEY


@dataclass(frozen=True, slots=True)
class ReportLeases:
    """Propose `LeaseCheckpoints` of the leases renewed since the last report (if any)."""


@dataclass(frozen=True, slots=True)
class CompactHistory:
    revision: int


Duty = RevokeLease | PromoteLearner | PublishRoster | ReportLeases | CompactHistory


def leader_duties(
    now: float, kv: KeyValueStore, status: LeaderStatus, config: DutyConfig
) -> list[Duty]:
    """What the leader should propose now, in order (see the module docstring)."""
    if status.raft.role is not Role.LEADER:
        return []
    duties: list[Duty] = []
    for rule in _RULES:
        duties.extend(rule(now, kv, status, config))
    return duties


def reachable(now: float, status: LeaderStatus, config: DutyConfig) -> frozenset[str]:
    """Members (voters and learners) this leader heard from within the last election
    timeout, itself included. Until its first CheckQuorum round has ended a new leader's
    progress calls every peer active, so then a peer counts once it has acknowledged an
    append of this term (its match index is no longer zero)."""
    if status.ticks <= config.election_ticks + 1:
        acked = {name for name, pr in status.raft.progress.items() if pr.match > 0}
        return frozenset({config.name, *acked})
    timeout = config.election_timeout
    heard = {name for name, at in status.heard.items() if now - at < timeout}
    return frozenset({config.name, *heard})


def first_round_over(ticks: int, config: DutyConfig) -> bool:
    """Whether the leader's first CheckQuorum round has ended, so that the activity it
    reports (`RawNode.recently_active`) means something: until then it calls every peer
    active."""
    return ticks > config.election_ticks + 1


# -- the rules, each (now, kv, status, config) -> duties -----------------------------------


def _expired_leases(
    now: float, kv: KeyValueStore, status: LeaderStatus, config: DutyConfig
) -> Iterable[Duty]:
    due = kv.leases.expired(now)[: config.max_revokes]
    return [RevokeLease(lease_id) for lease_id in due if lease_id not in status.revoking]


def _promotion(
    now: float, kv: KeyValueStore, status: LeaderStatus, config: DutyConfig
) -> Iterable[Duty]:
    raft = status.raft
    for name in sorted(status.promoting & raft.conf.learners):
        progress = raft.progress.get(name)
        if progress is not None and progress.match >= raft.commit:
            return [PromoteLearner(name)]  # one change at a time
    return []


def _roster(
    now: float, kv: KeyValueStore, status: LeaderStatus, config: DutyConfig
) -> Iterable[Duty]:
    if status.roster_pending or status.ticks <= 2 * config.election_ticks:
        return []
    voters = status.raft.conf.voters
    stored = kv.get(CHECKERS_KEY)
    if stored is None and voters == {config.name}:
        return []  # a cluster of one needs no roster: without one, the leader checks all
    grace = 2 * config.election_timeout
    live = tuple(sorted(v for v in voters if v == config.name or now - _last(v, status) < grace))
    value = encode_roster(live)
    if stored is not None and stored.value == value:
        return []
    return [PublishRoster(live, value)]


def _last(voter: str, status: LeaderStatus) -> float:
    """When `voter` was last heard from; a voter never heard from counts from when this
    leader first saw it in its configuration (a grace, not a liveness proof)."""
    heard = status.heard.get(voter)
    if heard is not None:
        return heard
    return status.first_seen.get(voter, float("-inf"))


def _lease_report(
    now: float, kv: KeyValueStore, status: LeaderStatus, config: DutyConfig
) -> Iterable[Duty]:
    return [ReportLeases()] if status.ticks % config.election_ticks == 0 else []


def _compaction(
    now: float, kv: KeyValueStore, status: LeaderStatus, config: DutyConfig
) -> Iterable[Duty]:
    if now - status.last_compaction < config.compact_every:
        return []
    keep = config.keep_revisions
    if kv.revision - kv.compacted_revision <= 2 * keep:
        return []
    return [CompactHistory(kv.revision - keep)]


_Rule = Callable[[float, KeyValueStore, LeaderStatus, DutyConfig], Iterable[Duty]]
_RULES: tuple[_Rule, ...] = (_expired_leases, _promotion, _roster, _lease_report, _compaction)


__all__ = [
    "CHECKERS_KEY",
    "CompactHistory",
    "Duty",
    "DutyConfig",
    "LeaderStatus",
    "PromoteLearner",
    "PublishRoster",
    "ReportLeases",
    "RevokeLease",
    "first_round_over",
    "leader_duties",
    "reachable",
]
