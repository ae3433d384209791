"""Which member of a group consumes which partition: rendezvous hashing over the live
members, and the moves that get a member from what it owns to what it should own.

Theory of operation. Every member sees the same two sets in the store -- the live
members (keys on their leases) and the claims (partition -> member, on the claimer's
lease) -- and computes the same answer: partition p belongs to the member with the
highest BLAKE2b score for (p, member), capped so that nobody holds more than its share
(`assign`). When a member joins, mostly the partitions it wins move; when one dies,
mostly its partitions move, spread over the rest. Nobody takes a partition that is
claimed: the owner hands it back (`revoke`, after its in-flight messages finish) or its
lease dies and the store deletes the claim.
So a partition -- and with it every key in it -- is never consumed by two live members at
once, which is what keeps per-key order across the group.

No I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Moves", "assign", "owner_of", "plan"]


def _score(partition: int, member: str) -> bytes:
    return hashlib.blake2b(f"{partition}/{member}".encode(), digest_size=8).digest()


def owner_of(partition: int, members: Iterable[str]) -> str | None:
    """The member with the highest score for `partition` (None: no member is alive)."""
    best: tuple[bytes, str] | None = None
    for member in members:
        score = (_score(partition, member), member)
        if best is None or score > best:
            best = score
    return best[1] if best is not None else None


def assign(members: Iterable[str], partitions: int) -> dict[int, str]:
    """Every partition's member: rendezvous order, capped at ceil(partitions / members)
    each, so a group of n members never leaves one with twice its share. Partitions pick
    in turn, each taking its best-scoring member that still has room; the same members
    give the same answer everywhere."""
    live = sorted(set(members))
    if not live:
        return {}
    cap = -(-partitions // len(live))
    load = dict.fromkeys(live, 0)
    out: dict[int, str] = {}
    for p in range(partitions):
        ranked = sorted(live, key=lambda m: (_score(p, m), m), reverse=True)
        member = next(m for m in ranked if load[m] < cap)
        load[member] += 1
        out[p] = member
    return out


@dataclass(frozen=True, slots=True)
class Moves:
    claim: tuple[int, ...]  # free partitions that are ours to take
    adopt: tuple[int, ...]  # claimed by us in the store, unknown to the consumer (a retried claim)
    revoke: tuple[int, ...]  # ours, but another member should have them: drain and hand back
    lost: tuple[int, ...]  # the consumer thinks they are ours; the store says otherwise


def plan(
    me: str,
    members: Iterable[str],
    claims: Mapping[int, str],
    owned: Iterable[int],
    partitions: int,
    draining: Iterable[int] = (),
    busy: Iterable[int] = (),
) -> Moves:
    """The moves for member `me`: `claims` is the store's partition -> member, `owned`
    what the consumer holds now, `draining` the owned ones already being handed back,
    `busy` those with a claim or a release on its way to the store (left alone)."""
    live = sorted(set(members))
    owned_set, draining_set, busy_set = set(owned), set(draining), set(busy)
    claim: list[int] = []
    adopt: list[int] = []
    revoke: list[int] = []
    lost: list[int] = []
    wanted = assign(live, partitions) if me in live else {}
    for p in range(partitions):
        if p in busy_set:
            continue
        holder = claims.get(p)
        winner = wanted.get(p)
        if p in owned_set:
            if holder != me:
                lost.append(p)
            elif winner != me and p not in draining_set:
                revoke.append(p)
        elif holder == me:
            adopt.append(p)
        elif holder is None and winner == me:
            claim.append(p)
    return Moves(tuple(claim), tuple(adopt), tuple(revoke), tuple(lost))
