"""The frames a driver and a ``shoal worker`` exchange over TCP (no I/O here).

Every frame is an 11-byte header -- payload length, kind, slot, slot generation --
followed by the payload. ``RUN`` and ``RESULTS`` payloads are the pickled messages of
``_slots`` (the worker relays them to and from its slot processes without reading
them); the others carry a little JSON. A slot's *generation* counts its processes: a
frame for an older generation (a process that was killed) is dropped.

    driver -> worker   AUTH(0, 0, token), first, when the worker has a token
                       RUN(slot, gen, message)   RESTART(slot, gen)
    worker -> driver   HELLO(info)   RESULTS(slot, gen, results)
                       SLOT_UP(slot, gen, {"pid"})   SLOT_DOWN(slot, gen, {"reason"})
                       REFUSED(0, 0, {"reason"}), then it closes: no or a bad AUTH
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!IBHI")

HELLO = 1
RUN = 2
RESULTS = 3
RESTART = 4
SLOT_UP = 5
SLOT_DOWN = 6
AUTH = 7  # the driver's token; a worker with a token reads nothing else before it
REFUSED = 8  # the worker's last frame to a driver it did not authenticate
MAX_TOKEN = 1024

SERVICE = "shoal-workers"  # the registry service every shoal worker registers under
MAX_FRAME = 1 << 31


def frame(kind: int, slot: int, gen: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind, slot, gen & 0xFFFFFFFF) + payload
