"""The task loop of a worker process, shared by the ``local`` and ``shoal`` executors.

A *slot process* runs attempts one after another, in the order they arrive, and streams
the results back in batches. It speaks through anything with ``recv_bytes()`` and
``send_bytes(data)``: a ``multiprocessing`` pipe (local executor) or a socket framed by
``FramedSocket`` (a ``shoal worker``'s slot). Messages, pickled:

* ``("run", [(job_no, cloudpickled fn), ...], [(job_no, index, attempt, partition), ...])``
  -- functions come once per job, with the first attempt of that job;
* ``("drop", [job_no, ...])`` -- forget those jobs' functions;
* ``("stop",)``.

Results go back as a pickled list of ``(job_no, index, attempt, ok, value, start, end)``
(``value`` is the traceback text when ``ok`` is false; times are ``time.monotonic()``).

A slot process never outlives its driver by more than the task it is running: EOF or a
broken pipe ends it quietly.
"""

from __future__ import annotations

import contextlib
import ctypes
import pickle
import signal
import socket
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["FramedSocket", "MessageChannel", "serve", "slot_main", "worker_main"]

PROTOCOL = pickle.HIGHEST_PROTOCOL
FLUSH_SECONDS = 0.002
_LENGTH = struct.Struct("!I")


class MessageChannel(Protocol):
    def recv_bytes(self) -> bytes: ...

    def send_bytes(self, data: bytes) -> None: ...


class FramedSocket:
    """``recv_bytes``/``send_bytes`` over a blocking stream socket: 4-byte length + data."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def recv_bytes(self) -> bytes:
        need = _LENGTH.size
        buffer = self._buffer
        while len(buffer) < need:
            self._fill()
        (size,) = _LENGTH.unpack_from(buffer)
        need += size
        while len(buffer) < need:
            self._fill()
        data = bytes(buffer[_LENGTH.size : need])
        del buffer[:need]
        return data

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("the other end closed the socket")
        self._buffer += chunk

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(_LENGTH.pack(len(data)) + data)


class _BrokenFunction:
    """Stands in for a function the worker could not unpickle: every call fails with why."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, partition: Any) -> Any:
        raise RuntimeError(f"the job's function could not be loaded in the worker:\n{self.text}")


def dumps_results(results: list[tuple[Any, ...]]) -> bytes:
    try:
        return pickle.dumps(results, PROTOCOL)
    except Exception:
        safe = []
        for item in results:
            try:
                pickle.dumps(item[4], PROTOCOL)
                safe.append(item)
            except Exception:
                job_no, index, attempt, _, _, start, end = item
                text = f"the result of partition {index} cannot be pickled:\n" + (
                    traceback.format_exc()
                )
                safe.append((job_no, index, attempt, False, text, start, end))
        return pickle.dumps(safe, PROTOCOL)


def worker_main(conn: Any, inherited: list[Any], flush_every: int) -> None:
    """A local executor's worker process: close what fork handed down, then serve."""
    for other in inherited:
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    with contextlib.suppress(EOFError, OSError):
        serve(conn, flush_every)


def slot_main(sock: socket.socket, flush_every: int) -> None:
    """A ``shoal worker``'s slot process (started by a forkserver): serve over ``sock``.

    On Linux it asks to be killed when its parent (the forkserver, which exits with the
    worker) dies, so a SIGKILLed worker leaves no task running behind it.
    """
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(EOFError, OSError):
        serve(FramedSocket(sock), flush_every)


def serve(conn: MessageChannel, flush_every: int) -> None:
    """Run attempts from ``conn`` in order; stream results back (see the module doc)."""
    fns: dict[int, Callable[[Any], Any]] = {}
    queue: deque[tuple[int, int, int, Any]] = deque()
    out: list[tuple[Any, ...]] = []
    first_unsent = 0.0
    recv, send = conn.recv_bytes, conn.send_bytes
    clock = time.monotonic
    while True:
        if not queue:
            if out:
                send(dumps_results(out))
                out = []
            message = pickle.loads(recv())
            kind = message[0]
            if kind == "run":
                for job_no, fn_bytes in message[1]:
                    try:
                        fns[job_no] = pickle.loads(fn_bytes)
                    except BaseException:
                        fns[job_no] = _BrokenFunction(traceback.format_exc())
                queue.extend(message[2])
            elif kind == "drop":
                for job_no in message[1]:
                    fns.pop(job_no, None)
            else:  # "stop"
                return
            continue
        job_no, index, attempt, partition = queue.popleft()
        start = clock()
        try:
            value = fns[job_no](partition)
            ok = True
        except BaseException:  # the task's failure is data for the driver, whatever it was
            value = traceback.format_exc()
            ok = False
        end = clock()
        if not out:
            first_unsent = end
        out.append((job_no, index, attempt, ok, value, start, end))
        if not queue or len(out) >= flush_every or end - first_unsent > FLUSH_SECONDS:
            send(dumps_results(out))
            out = []
