"""Stable hashes for the consistent-hash policies: the same key, the same host, anywhere.

Python's `hash()` of a str or bytes is salted per process (PYTHONHASHSEED), so two
gateway replicas would disagree about where a key lives; everything here uses BLAKE2b
from hashlib instead, whose output depends on the input bytes alone.

* `key_point(key)` is a request key's 128-bit point: the low 64 bits place it on the
  ring / in the Maglev table; the high 64 bits are independent of them and feed the
  decisions that must not correlate with placement (a Maglev key's fallback stride,
  whether a zone-aware pick spills over).
* `host_point(host_id, replica)` is the 64-bit position of one virtual node of a host.

Keys that are str are hashed as their UTF-8 bytes, so "abc" and b"abc" are the same key.
"""

from __future__ import annotations

from hashlib import blake2b

MASK64 = (1 << 64) - 1
_UNIT = 2.0**-53  # 53 bits: exactly representable, so a fraction is always < 1


def key_point(key: str | bytes) -> int:
    """The 128-bit point of a request key. TypeError for anything but str or bytes."""
    if isinstance(key, str):
        data = key.encode()
    elif isinstance(key, bytes):
        data = key
    else:
        raise TypeError(f"a hash key must be str or bytes, got {type(key).__name__}")
    return int.from_bytes(blake2b(data, digest_size=16).digest(), "little")


def host_point(host_id: str, replica: int) -> int:
    """The ring position of virtual node `replica` of `host_id` (64 bits)."""
    data = f"{host_id}#{replica}".encode()
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def host_permutation(host_id: str, table_size: int) -> tuple[int, int]:
    """Maglev's (offset, skip) for a host: its preference list is offset + j*skip mod M."""
    digest = int.from_bytes(blake2b(host_id.encode(), digest_size=16).digest(), "little")
    return (digest & MASK64) % table_size, (digest >> 64) % (table_size - 1) + 1


def placement(point: int) -> int:
    """The 64 bits of a key point that place it."""
    return point & MASK64


def fraction(point: int) -> float:
    """A number in [0, 1) from the independent high half of a key point."""
    return (point >> 75) * _UNIT
