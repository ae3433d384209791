"""The ``shoal`` executor: jobs on ``shoal worker`` processes found through the registry.

Theory of operation
-------------------
The driver (the caller's thread) lists the registry service ``shoal-workers`` (a KV
prefix) and watches it from the listing's revision, so it never misses a worker joining
or leaving. It opens one TCP connection per worker; the worker answers ``HELLO`` (its
slots and resources) and one ``SLOT_UP`` per slot process (see ``_frames`` and
``worker``). Each worker is one scheduler worker with ``slots`` slots and the resources
it advertised; the driver places every attempt the scheduler gives a worker on the slot
process with the shortest queue, and infers starts the way the local executor does (the
attempt behind the one that just finished on a slot started when that one ended).

The loop is the local executor's (the scheduler loop in ``_loop`` and the lane driver
core in ``_driver``: scheduler plumbing, result merging, reports, forgetting a job once
``wait`` has handed it over); this module
adds the TCP transport, registry discovery (``_watch``) and records. It batches
everything it can: one ``RUN`` frame per slot per loop iteration, a job's cloudpickled
function sent once per slot process, results streamed back in batches (the worker
relays them unread). Worker timestamps are mapped onto the driver's clock by the
arrival time of their batch.

Security: a driver presents its token (``token=``, else ``SHOAL_TOKEN``) in an ``AUTH``
frame first; a worker that refuses it answers ``REFUSED`` and closes, and the driver
says so (``ExecutorError`` naming the workers and why) instead of waiting. A worker whose
registry metadata says ``tls`` is spoken to over TLS (``worker_tls``), with ``tls=`` or
else the client's ``SHOAL_TLS_*`` files; with ``tls=`` given, every worker is (a plain
one is not used: no downgrade to clear text).

Failures:

* a worker whose connection drops, or whose registry instance goes away (its keep-alive
  stream closed: it died), is ``WorkerLost``; the scheduler reschedules its attempts;
* a slot process that dies under a running attempt (``SLOT_DOWN``) fails that attempt
  (it may have crashed the process; retries apply) and its queued attempts move to the
  worker's other slots or to its replacement process;
* cancelling a running attempt (timeout, lost speculative race, failed job) restarts its
  slot process (``RESTART``).

Records: with ``record=True`` (the default) every job is recorded in the control plane
(``records``): its summary while it runs and when it ends, and checkpoints of finished
tasks, written in batches by a background thread. ``resume=JOB_ID`` makes the next
submitted job continue that record: tasks already checkpointed (with their result) are
not run again. A cancel request (``shoal job cancel``) is watched and becomes
``CancelJob``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import selectors
import socket
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shoal.client import ControlPlane, ShoalError

from . import _frames as fr
from . import records
from ._driver import LIVE, PROTOCOL, DriverCore, Key, Lane, Run, RunState, encode_run
from ._watch import PrefixWatches
from .errors import ExecutorError, JobError
from .job import Job
from .scheduler import (
    CancelJob,
    CancelTask,
    JobSubmitted,
    RunTask,
    Scheduler,
    SchedulerConfig,
    TaskFailed,
    WorkerJoined,
    WorkerLost,
)
from .worker_tls import WorkerTls

__all__ = ["ShoalExecutor"]

_INSTANCES = f"/registry/services/{fr.SERVICE}/instances/"
_RECONNECT_FIRST = 0.5  # seconds before reconnecting to a worker; doubles up to _MAX
_RECONNECT_MAX = 30.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(slots=True, eq=False)
class _Slot(Lane):
    """A slot process of a worker (a lane); ``gen`` counts its processes."""

    index: int
    gen: int
    pid: int | None


@dataclass(slots=True, eq=False)
class _Conn:
    """One connection to one worker (a scheduler worker while it lasts)."""

    instance_id: str
    sid: str  # its scheduler worker id
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)
    slots: list[_Slot | None] = field(default_factory=list)
    backlog: deque[Key] = field(default_factory=deque)  # waiting for a slot process
    control: list[bytes] = field(default_factory=list)  # frames to send with the next flush
    joined: bool = False
    pid: int | None = None
    resources: dict[str, float] = field(default_factory=dict)


class ShoalExecutor(DriverCore):
    """Run jobs on the ``shoal worker`` processes registered at ``server``.

    ``server`` is the control plane's URL (several, comma-separated, for a cluster).
    The constructor waits up to ``wait_for_workers`` seconds for ``min_workers`` workers
    to answer, then raises ``ExecutorError`` if too few did. ``batch`` and ``tick`` are
    the local executor's knobs. ``record`` keeps job records in the control plane;
    ``resume`` (a job id) makes the first submitted job continue that recorded job.
    ``token`` is presented to every worker (workers started with ``--token`` demand it);
    ``tls`` (``WorkerTls(ca, cert, key)``) is how to speak TLS to workers (see the
    module doc). Neither is the control plane's: that client reads ``SHOAL_TOKEN`` and
    ``SHOAL_TLS_*`` as every client does.
    """

    name = "shoal"

    def __init__(
        self,
        server: str = "http://127.0.0.1:7700",
        *,
        min_workers: int = 1,
        wait_for_workers: float = 10.0,
        batch: int = 32,
        tick: float = 0.02,
        record: bool = True,
        resume: str | None = None,
        config: SchedulerConfig | None = None,
        token: str | None = None,
        tls: WorkerTls | None = None,
    ) -> None:
        if isinstance(min_workers, bool) or not isinstance(min_workers, int) or min_workers < 1:
            raise JobError(f"min_workers must be a positive int, got {min_workers!r}")
        if batch < 0 or tick <= 0:
            raise JobError(f"batch must be >= 0 and tick > 0, got batch={batch}, tick={tick}")
        try:
            self._plane = ControlPlane(server, timeout=5.0, retry_budget=2.0)
        except ValueError as error:
            raise ExecutorError(f"bad control-plane URL {server!r}: {error}") from None
        self.server = server
        # Presented to every worker first (AUTH); workers started with --token demand it.
        self._token = (token or os.environ.get("SHOAL_TOKEN") or "").encode()
        self._tls_always = tls is not None  # then no worker is spoken to in clear text
        files = tls or WorkerTls.from_env()
        self._ssl = files.client_context() if files is not None else None
        self._has_cert = files is not None and files.cert is not None
        self._problems: dict[str, str] = {}  # instance id -> why it is not connected
        self._refused: set[str] = set()  # instances that refused our token
        super().__init__(Scheduler(config or SchedulerConfig(prefetch=batch)), tick)
        self._resume = resume
        self._conns: dict[str, _Conn] = {}  # by sid
        self._by_instance: dict[str, _Conn] = {}
        self._instances: dict[str, tuple[str, int, bool]] = {}  # id -> address, port, tls
        self._retry_at: dict[str, float] = {}
        self._retry_delay: dict[str, float] = {}
        self._dirty: set[str] = set()  # jobs whose record summary is out of date
        self._recent: dict[int, deque[int]] = {}  # job_no -> tasks that reported lately
        self._next_record = 0.0
        self._watches = PrefixWatches(server)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._watches.waker, selectors.EVENT_READ, None)
        self._recorder = records.JobRecorder(self._plane) if record else None
        try:
            if resume is not None:
                if not record:
                    raise JobError("resume needs record=True: checkpoints live in the records")
                records.check_resumable(self._plane, resume, server)
            self._discover()
            self._await_workers(min_workers, wait_for_workers)
        except BaseException:
            self.close()
            raise

    # -- public API --

    def workers(self) -> dict[str, int | None]:
        """The connected workers: registry instance id -> worker process pid."""
        return {c.instance_id: c.pid for c in self._conns.values() if c.joined}

    def slot_pids(self) -> dict[str, list[int]]:
        """The slot processes serving this driver: registry instance id -> their pids."""
        return {
            c.instance_id: [s.pid for s in c.slots if s is not None and s.pid is not None]
            for c in self._conns.values()
            if c.joined
        }

    def submit(self, job: Job) -> str:
        """Hand ``job`` to the scheduler; its first tasks are sent to workers at once."""
        self._check_open()
        partitions = job.resolve()
        restored: dict[int, Any] = {}
        resumed = self._resume
        if resumed is not None:
            self._resume = None
            job_id = resumed
            if job_id in self._runs:
                raise JobError(f"job {job_id!r} is already running on this executor")
            restored = records.restore(self._plane, job_id, job.name, len(partitions), self.server)
        else:
            job_id = f"{_SAFE.sub('-', job.name)[:80]}-{uuid.uuid4().hex[:10]}"
        self._seq += 1
        specs = job.task_specs(job_id, len(partitions))
        offered = sorted({str(c.resources) for c in self._conns.values() if c.joined})
        self._check_placeable(job, specs[0], "shoal worker", offered)
        run = self._new_run(job, job_id, partitions, specs)
        run.submitted_wall = time.time()
        for index, value in sorted(restored.items()):
            run.merger.add(index, value)
            run.restored.add(index)
            run.done += 1
        if self._recorder is not None:
            self._recorder.start_job(
                job_id,
                {"host": socket.gethostname(), "pid": os.getpid()},
                first_seq=0 if resumed is None else records.next_chunk(self._plane, job_id),
            )
        todo = tuple(s for i, s in enumerate(specs) if i not in run.restored)
        if todo:
            self._feed(
                JobSubmitted(job_id, todo, job.priority, run.submitted_at, f"submit-{job_id}")
            )
            self._record(run)
        else:
            run.scheduled = False
            self._end_run(run, RunState.DONE)
        self._flush()
        return job_id

    def _shut_down(self) -> None:
        """Disconnect from every worker (their slot processes for us stop)."""
        self._watches.stop()
        for conn in list(self._conns.values()):
            with contextlib.suppress(OSError):
                conn.sock.close()
        self._conns.clear()
        if self._recorder is not None:
            for run in self._runs.values():
                if run.state in LIVE:
                    run.state = RunState.INTERRUPTED
                    self._record(run)
            self._recorder.close()
        self._plane.close()
        self._selector.close()
        self._watches.close()

    # -- discovery --

    def _discover(self) -> None:
        try:
            pages = list(self._plane.pages(_INSTANCES))
        except ShoalError as error:
            raise ExecutorError(
                f"cannot reach the control plane at {self.server}: {error}"
            ) from error
        revision = pages[-1].revision if pages else 0
        for page in pages:
            for kv in page.kvs:
                self._on_instance(kv.key, kv.value)
        self._watches.follow(_INSTANCES, revision + 1, "instance")
        if self._recorder is not None:
            self._watches.follow(records.CANCEL_PREFIX, revision + 1, "cancel")

    def _on_instance(self, key: str, value: str | None) -> None:
        instance_id = key[len(_INSTANCES) :]
        if not instance_id or "/" in instance_id:
            return
        address = None
        if value is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(value)
                if data.get("health", {}).get("status", "passing") != "critical":
                    wants_tls = (data.get("metadata") or {}).get("tls") == "1"
                    address = (str(data["address"]), int(data["port"]), wants_tls)
        if address is None:
            self._instances.pop(instance_id, None)
            self._problems.pop(instance_id, None)
            self._refused.discard(instance_id)
            self._retry_at.pop(instance_id, None)
            self._retry_delay.pop(instance_id, None)
            conn = self._by_instance.get(instance_id)
            if conn is not None:
                self._lose(conn, f"worker {instance_id} left the registry")
            return
        self._instances[instance_id] = address
        conn = self._by_instance.get(instance_id)
        if conn is None:
            self._connect(instance_id)

    def _connect(self, instance_id: str) -> None:
        address = self._instances.get(instance_id)
        if address is None or instance_id in self._by_instance:
            return
        host, port, wants_tls = address
        if wants_tls and self._ssl is None:
            self._problems[instance_id] = (
                f"worker {instance_id} speaks TLS: give ShoalExecutor(tls=WorkerTls(ca, ...)) "
                "or SHOAL_TLS_CA"
            )
            self._retry_later(instance_id)
            return
        try:
            sock = socket.create_connection((host, port), timeout=5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None and (wants_tls or self._tls_always):
                sock = self._ssl.wrap_socket(sock, server_hostname=host)  # handshake here
            if self._token:
                sock.sendall(fr.frame(fr.AUTH, 0, 0, self._token))
            sock.settimeout(None)
        except OSError as error:
            self._problems[instance_id] = f"cannot connect to worker {instance_id}: {error}"
            self._retry_later(instance_id)
            return
        self._retry_at.pop(instance_id, None)
        sid = instance_id
        generation = 1
        while sid in self._conns or sid in self._pids:
            generation += 1
            sid = f"{instance_id}~{generation}"
        conn = _Conn(instance_id, sid, sock)
        self._conns[sid] = conn
        self._by_instance[instance_id] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _retry_later(self, instance_id: str) -> None:
        delay = self._retry_delay.get(instance_id, _RECONNECT_FIRST)
        self._retry_delay[instance_id] = min(delay * 2, _RECONNECT_MAX)
        self._retry_at[instance_id] = time.monotonic() + delay

    def _await_workers(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def settled() -> bool:
            if len(self.workers()) >= count or time.monotonic() >= deadline:
                return True
            # Every registered worker refused our token: waiting cannot help.
            return bool(self._instances) and self._refused >= set(self._instances)

        self._drive(settled, None)
        have = len(self.workers())
        if have < count:
            registered = len(self._instances)
            problems = [self._problems[i] for i in sorted(self._instances) if i in self._problems]
            why = "; ".join(problems[:3]) if problems else ""
            if self._refused and not self._token:
                why += " (this driver has no token: give token= or SHOAL_TOKEN)"
            raise ExecutorError(
                f"{have} shoal worker(s) answered within {timeout:g}s, need {count} "
                f"({registered} registered as {fr.SERVICE!r} at {self.server})"
                + (f": {why}" if why else f"; start some with: shoal worker --server {self.server}")
            )

    # -- the loop --

    def _poll(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            conn = key.data
            if conn is None:
                self._drain_inbox()
            elif conn.sid in self._conns:
                self._receive(conn)

    def _housekeeping(self, now: float) -> None:
        for instance_id, at in list(self._retry_at.items()):
            if now >= at:
                self._connect(instance_id)
        if self._recorder is not None and now >= self._next_record and self._dirty:
            self._next_record = now + 0.2
            dirty, self._dirty = self._dirty, set()
            for job_id in dirty:
                self._record(self._runs[job_id])

    def _drain_inbox(self) -> None:
        for kind, item in self._watches.drain():
            if kind == "instance":
                self._on_instance(*item)
            elif kind == "cancel" and item[1] is not None:
                job_id = item[0][len(records.CANCEL_PREFIX) :]
                run = self._runs.get(job_id)
                if run is not None and run.state is RunState.RUNNING:
                    run.state = RunState.CANCELLING
                    self._feed(CancelJob(job_id, "cancelled by request (shoal job cancel)"))

    def _receive(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(1 << 20)
        except OSError as error:
            self._lose(conn, f"connection to worker {conn.instance_id} failed: {error}")
            return
        if not chunk:
            self._lose(conn, f"worker {conn.instance_id} closed the connection")
            return
        buffer = conn.buffer
        buffer += chunk
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):  # records decrypted already: no select wakes us
            while pending := sock.pending():
                buffer += sock.recv(pending)
        header = fr.HEADER
        hsize = header.size
        offset = 0
        end = len(buffer)
        while end - offset >= hsize:
            size, kind, index, gen = header.unpack_from(buffer, offset)
            if end - offset - hsize < size:
                break
            payload = bytes(buffer[offset + hsize : offset + hsize + size])
            offset += hsize + size
            self._on_frame(conn, kind, index, gen, payload)
            if conn.sid not in self._conns:
                return
        del buffer[:offset]

    def _on_frame(self, conn: _Conn, kind: int, index: int, gen: int, payload: bytes) -> None:
        if kind == fr.RESULTS:
            slot = conn.slots[index] if index < len(conn.slots) else None
            if slot is not None and slot.gen == gen:
                self._on_results(conn, slot, pickle.loads(payload))
        elif kind == fr.HELLO:
            info = json.loads(payload)
            conn.pid = info.get("pid")
            conn.resources = {str(k): float(v) for k, v in info["resources"].items()}
            slots = int(info["slots"])
            conn.slots = [None] * slots
            conn.joined = True
            self._retry_delay.pop(conn.instance_id, None)
            self._problems.pop(conn.instance_id, None)
            self._refused.discard(conn.instance_id)
            self._pids[conn.sid] = conn.pid
            self._feed(WorkerJoined(conn.sid, conn.resources, slots, f"join-{conn.sid}"))
        elif kind == fr.SLOT_UP:
            if index < len(conn.slots):
                conn.slots[index] = _Slot(index, gen, json.loads(payload).get("pid"))
                self._place_backlog(conn)
        elif kind == fr.REFUSED:
            reason = json.loads(payload).get("reason", "refused")
            self._problems[conn.instance_id] = reason
            self._refused.add(conn.instance_id)
            self._lose(conn, reason)
        elif kind == fr.SLOT_DOWN:
            slot = conn.slots[index] if index < len(conn.slots) else None
            if slot is not None and slot.gen == gen:
                reason = json.loads(payload).get("reason", "")
                self._slot_gone(conn, slot, reason, failed=True)

    def _on_results(self, conn: _Conn, slot: _Slot, batch: list[tuple[Any, ...]]) -> None:
        offset = time.monotonic() - batch[-1][6]  # the worker's clock onto ours
        recorder = self._recorder
        if recorder is None:
            self._take_results(conn.sid, slot.fifo, batch, offset)
            return
        checkpoints: list[tuple[str, int, Any]] = []
        for job_no, index, *_ in batch:  # every reported attempt, failures too, is news
            recent = self._recent.get(job_no)
            if recent is None:
                recent = self._recent[job_no] = deque(maxlen=records.STREAM_TASKS)
            recent.append(index)
            reported = self._by_no.get(job_no)
            if reported is not None:
                self._dirty.add(reported.job_id)
        self._take_results(conn.sid, slot.fifo, batch, offset, checkpoints, records.encode_result)
        if checkpoints:
            recorder.finished(checkpoints)
            self._dirty.update(job_id for job_id, _, _ in checkpoints)

    # -- instructions --

    def _run_task(self, instruction: RunTask, run: Run, index: int) -> None:
        conn = self._conns.get(instruction.worker_id)
        if conn is None:
            return  # lost; its WorkerLost (queued) reschedules this attempt
        slot = self._pick_slot(conn)
        if slot is None:
            conn.backlog.append((run.job_no, index, instruction.attempt))
        else:
            self._enqueue(slot, conn.sid, run, index, instruction.attempt)

    def _cancel_task(self, instruction: CancelTask, run: Run, index: int) -> None:
        key = (run.job_no, index, instruction.attempt)
        conn = self._conns.get(instruction.worker_id)
        if conn is None:
            return
        slot = next((s for s in conn.slots if s is not None and s.fifo and s.fifo[0] == key), None)
        if slot is not None:
            conn.control.append(fr.frame(fr.RESTART, slot.index, slot.gen))
            self._slot_gone(conn, slot, "restarted to stop a cancelled attempt", failed=False)
        elif key in conn.backlog:
            conn.backlog.remove(key)

    def _pick_slot(self, conn: _Conn) -> _Slot | None:
        best: _Slot | None = None
        for slot in conn.slots:
            if slot is not None and (best is None or len(slot.fifo) < len(best.fifo)):
                best = slot
        return best

    def _place_backlog(self, conn: _Conn) -> None:
        while conn.backlog:
            slot = self._pick_slot(conn)
            if slot is None:
                return
            job_no, index, attempt = conn.backlog.popleft()
            run = self._by_no.get(job_no)
            if run is not None and self._scheduler.is_live(run.task_ids[index], attempt):
                self._enqueue(slot, conn.sid, run, index, attempt)
        if not self._busy:
            self._process_events()

    def _slot_gone(self, conn: _Conn, slot: _Slot, reason: str, *, failed: bool) -> None:
        """A slot process ended: fail its running attempt (if it died), requeue the rest."""
        conn.slots[slot.index] = None
        fifo = list(slot.fifo)
        run = self._by_no.get(fifo[0][0]) if fifo and failed else None
        if run is not None:
            _, index, attempt = fifo[0]
            error = f"worker {conn.instance_id}: {reason} while running attempt {attempt}"
            task_id = run.task_ids[index]
            self._events.append(TaskFailed(task_id, attempt, conn.sid, error, time.monotonic()))
        conn.backlog.extend(fifo[1:])
        self._place_backlog(conn)

    def _lose(self, conn: _Conn, reason: str) -> None:
        if conn.sid not in self._conns:
            return
        del self._conns[conn.sid]
        if self._by_instance.get(conn.instance_id) is conn:
            del self._by_instance[conn.instance_id]
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()
        if not conn.joined:
            hint = ""
            if isinstance(conn.sock, ssl.SSLSocket):  # a refused handshake ends like this
                hint = (
                    " (this driver presents no TLS client certificate: does the worker "
                    "require one?)"
                    if not self._has_cert
                    else " (does the worker trust this driver's TLS client certificate?)"
                )
            self._problems.setdefault(conn.instance_id, f"{reason} before its HELLO{hint}")
        if conn.instance_id in self._instances:
            self._retry_later(conn.instance_id)
        if conn.joined:
            self._events.append(WorkerLost(conn.sid, f"lost-{conn.sid}: {reason}"))
            if not self._busy:
                self._process_events()

    def _flush(self) -> None:
        """Send every slot its new attempts: one write per worker."""
        for conn in list(self._conns.values()):
            frames = conn.control
            for slot in conn.slots:
                if slot is None or not slot.outbox:
                    continue
                data = encode_run(slot.new_fns, slot.outbox)
                slot.outbox = []
                slot.new_fns = []
                frames.append(fr.frame(fr.RUN, slot.index, slot.gen, data))
            if not frames:
                continue
            conn.control = []
            try:
                conn.sock.sendall(b"".join(frames))
            except OSError as error:
                self._lose(conn, f"sending to worker {conn.instance_id} failed: {error}")

    def _drop(self, run: Run) -> None:
        payload = pickle.dumps(("drop", [run.job_no]), PROTOCOL)
        for conn in self._conns.values():
            for slot in conn.slots:
                if slot is not None and run.job_no in slot.fns and not slot.outbox:
                    slot.fns.discard(run.job_no)
                    conn.control.append(fr.frame(fr.RUN, slot.index, slot.gen, payload))

    def _ended(self, run: Run) -> None:
        super()._ended(run)
        if self._recorder is not None:
            if run.state is RunState.DONE:
                self._recorder.forget_checkpoints(run.job_id)
            self._record(run)
            self._dirty.discard(run.job_id)

    # -- records --

    def _forgot(self, run: Run) -> None:
        super()._forgot(run)
        self._dirty.discard(run.job_id)
        self._recent.pop(run.job_no, None)
        if self._recorder is not None:
            self._recorder.forget_job(run.job_id)

    def _record(self, run: Run) -> None:
        if self._recorder is None:
            return
        running: list[int] = []
        if run.state in LIVE:  # attempts at the head of a slot's queue: O(slots), not O(tasks)
            job_no = run.job_no
            for conn in self._conns.values():
                for slot in conn.slots:
                    if slot is not None and slot.fifo and slot.fifo[0][0] == job_no:
                        running.append(slot.fifo[0][1])
        # The task stream: the attempts of tasks running now and of those that reported
        # lately (O(slots + STREAM_TASKS) per record, whatever the job's size).
        shown = list(dict.fromkeys([*running, *reversed(self._recent.get(run.job_no, ()))]))
        stream = records.task_stream(self._scheduler, run, shown[: records.STREAM_TASKS])
        summary = records.summarize(run, self.name, len(running), stream)
        self._recorder.summary(run.job_id, summary)
