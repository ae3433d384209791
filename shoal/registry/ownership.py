"""Which control-plane member runs an instance's active check (pure: no I/O, no clock).

Rendezvous (highest-random-weight) hashing: every member scores every key with a stable
hash of ``(member, key)`` and the highest score owns it. Every member that holds the same
roster computes the same owner without talking to the others, a key's owner changes only
when that owner leaves (or a new member outscores it), and removing a member moves only
that member's keys, spread evenly over the rest. No virtual nodes are needed, and at
3-7 members the cost is a handful of hashes per key.

The hash is BLAKE2b, never Python's ``hash()``: that is salted per process, and the whole
point is that separate processes agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from hashlib import blake2b


def _score(member: str, key: bytes) -> bytes:
    # Keyed by the member, so "ab"+"c" and "a"+"bc" cannot collide; 8 bytes are plenty to
    # rank a few members, and bytes compare like the big-endian integers they encode.
    return blake2b(key, digest_size=8, key=member.encode()[:64]).digest()


def check_owner(key: str | bytes, members: Iterable[str]) -> str | None:
    """The member (of `members`) that owns `key`; None if there are no members.

    Ties (practically impossible) go to the smaller name so the answer never depends on
    the order of `members`.
    """
    raw = key.encode() if isinstance(key, str) else key
    best: tuple[bytes, str] | None = None
    for member in members:
        score = _score(member, raw)
        if best is None or score > best[0] or (score == best[0] and member < best[1]):
            best = (score, member)
    return best[1] if best is not None else None


def encode_roster(members: Iterable[str]) -> bytes:
    """The stored form of a roster of checking members: a sorted JSON list of names, so
    equal rosters are equal bytes (the leader writes only when the bytes differ)."""
    return json.dumps(sorted(set(members)), separators=(",", ":")).encode()


def parse_roster(data: bytes) -> tuple[str, ...] | None:
    """The member names in a stored roster; None if it is not a JSON list of names."""
    try:
        names = json.loads(data)
    except ValueError:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        return None
    return tuple(sorted(set(names)))


__all__ = ["check_owner", "encode_roster", "parse_roster"]
