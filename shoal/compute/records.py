"""Job records in the control plane: summaries, checkpoints and cancel requests.

Small metadata only goes through Raft (DESIGN.md decision 8); partition data and
results travel directly between driver and workers. The key layout::

    /compute/jobs/{job_id}            the job's summary, JSON (see ``summary``): name,
                                      state, task counts, times, driver host/pid, error,
                                      and a task stream of recent attempts (``stream``)
    /compute/tasks/{job_id}/{seq}     a checkpoint chunk, JSON {index: result | null}:
                                      tasks that finished, with their pickled result
                                      (base64) when it is at most 64 KiB
    /compute/cancel/{job_id}          a cancel request (``shoal job cancel``)
    /compute/drivers/{job_id}         present while the job's driver lives: attached to
                                      the driver's lease (10 s TTL, renewed every 2 s)

States: ``running`` -> ``done`` | ``failed`` | ``cancelled`` | ``interrupted`` (the
driver was closed before the job ended; resumable). A driver that dies outright leaves
``running`` behind, but its ``/compute/drivers/`` key goes with its lease, so listings
mark it ``driver_alive: false`` (shown as ``orphaned``); ``shoal job run --resume ID``
picks it up. Checkpoints are deleted
when a job succeeds (its summary stays); a failed, cancelled or interrupted job keeps
them, so it can be resumed.

``JobRecorder`` batches writes: the driver hands it summaries and finished tasks without
waiting, and a thread writes them every ``interval`` seconds (default 200 ms) in as few
transactions as fit, so recording costs no round trip per task.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.client import ControlPlane, ShoalError

from ._driver import LIVE, Run
from .errors import ExecutorError, JobError
from .scheduler import Scheduler

__all__ = [
    "CANCEL_PREFIX",
    "DRIVERS_PREFIX",
    "JOBS_PREFIX",
    "MAX_CHECKPOINT_RESULT",
    "TASKS_PREFIX",
    "JobRecorder",
    "Restored",
    "cancel_key",
    "check_resumable",
    "display_state",
    "job_key",
    "list_jobs",
    "load_checkpoints",
    "next_chunk",
    "read_job",
    "request_cancel",
    "restore",
    "summarize",
    "task_stream",
    "tasks_prefix",
]

JOBS_PREFIX = "/compute/jobs/"
TASKS_PREFIX = "/compute/tasks/"
CANCEL_PREFIX = "/compute/cancel/"
DRIVERS_PREFIX = "/compute/drivers/"
DRIVER_TTL = 10
MAX_CHECKPOINT_RESULT = 64 * 1024
_MAX_TXN_OPS = 128
_MAX_TXN_BYTES = 512 * 1024
TERMINAL = frozenset({"done", "failed", "cancelled"})
STREAM_TASKS = 48  # tasks whose attempts a summary's task stream shows
STREAM_ATTEMPTS = 96


def job_key(job_id: str) -> str:
    return JOBS_PREFIX + job_id


def tasks_prefix(job_id: str) -> str:
    return f"{TASKS_PREFIX}{job_id}/"


def cancel_key(job_id: str) -> str:
    return CANCEL_PREFIX + job_id


def encode_result(value: Any) -> str | None:
    """The base64 pickle of ``value`` if it is small enough to checkpoint, else None."""
    try:
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None
    if len(data) > MAX_CHECKPOINT_RESULT:
        return None
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Restored:
    """What a resumed job gets back: its summary and the results it already has."""

    summary: Mapping[str, Any]
    results: Mapping[int, Any]  # partition index -> result
    finished_without_result: frozenset[int]  # finished, but the result was too big to keep


def task_stream(scheduler: Scheduler, run: Run, indexes: Sequence[int]) -> list[dict[str, Any]]:
    """The attempts of the tasks at ``indexes``, oldest start first, for the summary's
    ``stream`` (the dashboard's task stream): which worker ran what, retries, and
    speculative copies of stragglers. Times are seconds since the job was submitted."""
    origin = run.submitted_at
    out: list[dict[str, Any]] = []
    for index in indexes:
        try:
            views = scheduler.attempts(run.task_ids[index])
        except (KeyError, IndexError):
            continue  # restored from a checkpoint, or already forgotten
        for view in views:
            out.append(
                {
                    "task": index,
                    "attempt": view.attempt,
                    "worker": view.worker_id,
                    "speculative": view.speculative,
                    "outcome": str(view.outcome),
                    "started": None if view.started_at is None else view.started_at - origin,
                    "ended": None if view.ended_at is None else view.ended_at - origin,
                    "error": view.error[-300:],
                }
            )
    out.sort(key=lambda a: (a["started"] is None, a["started"] or 0.0, a["task"], a["attempt"]))
    return out[-STREAM_ATTEMPTS:]


def summarize(
    run: Run, executor: str, running: int, stream: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A run's summary record (``running``: its attempts running now, as the driver knows;
    ``stream``: recent attempts, see ``task_stream``)."""
    total = len(run.task_ids)
    failed = 0
    if run.state not in LIVE:
        running = 0
        if run.state != "done":
            failed = 1 if run.error is not None and run.error.task_id else 0
    now = time.time()
    return {
        "id": run.job_id,
        "name": run.job.name,
        "state": run.state if run.state != "cancelling" else "running",
        "executor": executor,
        "priority": run.job.priority,
        "tasks": total,
        "counts": {
            "done": run.done,
            "running": running,
            "pending": max(0, total - run.done - running - failed),
            "failed": failed,
            "restored": len(run.restored),
        },
        "submitted_at": run.submitted_wall,
        "updated_at": now,
        "finished_at": now if run.finished_at is not None else None,
        "driver": {"host": socket.gethostname(), "pid": os.getpid()},
        "workers": sorted({t[0] for t in run.timing.values()}),
        "error": "" if run.error is None else str(run.error)[-4000:],
        "stream": stream or [],
    }


def read_job(plane: ControlPlane, job_id: str) -> dict[str, Any] | None:
    """The job's summary (with ``driver_alive``), or None if it is not recorded."""
    kv = plane.get(job_key(job_id))
    if kv is None:
        return None
    data: dict[str, Any] = json.loads(kv.value)
    data["driver_alive"] = plane.get(DRIVERS_PREFIX + job_id) is not None
    return data


def list_jobs(plane: ControlPlane) -> list[dict[str, Any]]:
    """Every recorded job, newest first, each with ``driver_alive`` (see the module doc)."""
    alive = {kv.key[len(DRIVERS_PREFIX) :] for kv in plane.iter_keys(DRIVERS_PREFIX)}
    jobs = []
    for kv in plane.iter_keys(JOBS_PREFIX):
        with contextlib.suppress(ValueError):
            record = json.loads(kv.value)
            record["driver_alive"] = record.get("id") in alive
            jobs.append(record)
    jobs.sort(key=lambda j: j.get("submitted_at", 0), reverse=True)
    return jobs


def display_state(record: Mapping[str, Any]) -> str:
    """The state to show: ``orphaned`` for a running job whose driver is gone."""
    state = str(record.get("state", ""))
    if state == "running" and record.get("driver_alive") is False:
        return "orphaned"
    return state


def load_checkpoints(plane: ControlPlane, job_id: str) -> tuple[dict[int, Any], set[int]]:
    results: dict[int, Any] = {}
    bare: set[int] = set()
    for kv in plane.iter_keys(tasks_prefix(job_id)):
        chunk = json.loads(kv.value)
        for index_text, encoded in chunk.items():
            index = int(index_text)
            if encoded is None:
                bare.add(index)
            else:
                results[index] = pickle.loads(base64.b64decode(encoded))
    return results, bare - set(results)


def check_resumable(plane: ControlPlane, job_id: str, server: str) -> dict[str, Any]:
    """The summary of ``job_id`` if it can be resumed, else a ``JobError`` saying why."""
    try:
        summary = read_job(plane, job_id)
    except ShoalError as error:
        raise ExecutorError(f"cannot reach the control plane at {server}: {error}") from error
    if summary is None:
        raise JobError(f"cannot resume {job_id!r}: no such job is recorded")
    if summary.get("state") == "done":
        raise JobError(f"cannot resume {job_id!r}: it already finished (its result is not kept)")
    return summary


def restore(plane: ControlPlane, job_id: str, name: str, tasks: int, server: str) -> dict[int, Any]:
    """The checkpointed results of ``job_id`` (which must be job ``name`` with ``tasks``
    tasks); clears a cancel request left from its earlier run."""
    summary = check_resumable(plane, job_id, server)
    if summary.get("name") != name or summary.get("tasks") != tasks:
        raise JobError(
            f"cannot resume {job_id!r}: it is job {summary.get('name')!r} with "
            f"{summary.get('tasks')} tasks, not {name!r} with {tasks}"
        )
    try:
        results, _ = load_checkpoints(plane, job_id)
        plane.delete(cancel_key(job_id))
    except ShoalError as error:
        raise ExecutorError(f"cannot read job {job_id!r} from {server}: {error}") from error
    return results


def next_chunk(plane: ControlPlane, job_id: str) -> int:
    """The first free checkpoint chunk number of ``job_id`` (after its existing ones)."""
    last = -1
    with contextlib.suppress(ShoalError, ValueError):
        for kv in plane.iter_keys(tasks_prefix(job_id)):
            last = max(last, int(kv.key.rsplit("/", 1)[1]))
    return last + 1


def request_cancel(plane: ControlPlane, job_id: str, reason: str) -> None:
    value = json.dumps({"reason": reason, "at": time.time()}, separators=(",", ":"))
    plane.put(cancel_key(job_id), value)


class JobRecorder:
    """Writes summaries and checkpoints in the background, batched (see the module doc)."""

    def __init__(self, plane: ControlPlane, interval: float = 0.2) -> None:
        self._plane = plane
        self._interval = interval
        self._lock = threading.Lock()
        self._summaries: dict[str, dict[str, Any]] = {}
        self._chunks: dict[str, dict[str, str | None]] = {}
        self._seq: dict[str, int] = {}
        self._forget: set[str] = set()
        self._forgotten: set[str] = set()  # no more checkpoints for these
        self._retired: set[str] = set()  # the driver is done with these: drop their state
        self._drivers: dict[str, str | None] = {}  # job id -> driver info to put, or None: delete
        self._lease: int | None = None
        self._renewed = 0.0
        self._wake = threading.Event()
        self._stopped = False
        self._warned = False
        self._thread = threading.Thread(target=self._loop, name="shoal-job-recorder", daemon=True)
        self._thread.start()

    def start_job(self, job_id: str, driver: Mapping[str, Any], first_seq: int = 0) -> None:
        """Begin recording ``job_id``: its driver key, and checkpoint chunks from ``first_seq``."""
        if self._lease is None:
            try:
                self._lease = self._plane.grant(DRIVER_TTL)
                self._renewed = time.monotonic()
            except ShoalError:
                self._lease = None  # recorded without a liveness key; listings say orphaned
        with self._lock:
            self._seq[job_id] = first_seq
            self._drivers[job_id] = json.dumps(dict(driver), separators=(",", ":"))

    def summary(self, job_id: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._summaries[job_id] = summary
            if summary.get("state") in TERMINAL or summary.get("state") == "interrupted":
                self._drivers[job_id] = None
        if summary.get("state") in TERMINAL:
            self._wake.set()

    def finished(self, tasks: list[tuple[str, int, str | None]]) -> None:
        """Checkpoint finished tasks: ``(job id, partition index, encode_result(value))``."""
        with self._lock:
            chunks, gone = self._chunks, self._forgotten
            for job_id, index, encoded in tasks:
                if job_id in gone:
                    continue
                chunk = chunks.get(job_id)
                if chunk is None:
                    chunk = chunks[job_id] = {}
                chunk[str(index)] = encoded

    def forget_checkpoints(self, job_id: str) -> None:
        """Delete the job's checkpoints (with its next summary write)."""
        with self._lock:
            self._forget.add(job_id)
            self._forgotten.add(job_id)
            self._chunks.pop(job_id, None)

    def forget_job(self, job_id: str) -> None:
        """The driver will report nothing more about ``job_id``: drop what is kept for it
        (its next chunk number) once nothing of it is left to write."""
        with self._lock:
            self._retired.add(job_id)

    def close(self, timeout: float = 5.0) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout)
        if self._lease is not None:
            with contextlib.suppress(ShoalError):
                self._plane.revoke(self._lease)

    # -- the writer thread --

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopped
            self._flush(final=stopping)
            if stopping:
                return
            if self._lease is not None and time.monotonic() - self._renewed > DRIVER_TTL / 5:
                with contextlib.suppress(ShoalError):
                    self._plane.keepalive(self._lease)
                    self._renewed = time.monotonic()

    def _take(self) -> list[dict[str, Any]]:
        """Everything waiting, as txn operations: checkpoint chunks before summaries."""
        with self._lock:
            if self._retired:  # a failed batch's chunks are back in _chunks by now
                for job_id in [j for j in self._retired if j not in self._chunks]:
                    self._retired.discard(job_id)
                    self._seq.pop(job_id, None)
                    self._forgotten.discard(job_id)
            summaries, self._summaries = self._summaries, {}
            chunks, self._chunks = self._chunks, {}
            forget, self._forget = self._forget, set()
            drivers, self._drivers = self._drivers, {}
            ops: list[dict[str, Any]] = []
            for job_id, info in drivers.items():
                key = DRIVERS_PREFIX + job_id
                if info is None:
                    ops.append({"delete": {"key": key}})
                elif self._lease is not None:
                    ops.append({"put": {"key": key, "value": info, "lease": self._lease}})
            for job_id, chunk in chunks.items():
                for part in _split(chunk):
                    seq = self._seq.get(job_id, 0)
                    self._seq[job_id] = seq + 1
                    ops.append(_put(f"{tasks_prefix(job_id)}{seq:08d}", part))
            for job_id in forget:
                ops.append({"delete": {"key": tasks_prefix(job_id), "prefix": True}})
            for job_id, summary in summaries.items():
                ops.append(_put(job_key(job_id), summary))
        return ops

    def _flush(self, *, final: bool) -> None:
        """Write what is waiting; a failed batch is kept for the next flush (or, on the
        final flush, retried twice)."""
        for batch in _batches(self._take()):
            for attempt in range(3 if final else 1):
                try:
                    self._plane.txn([], batch)
                    break
                except ShoalError as error:
                    if not self._warned:
                        self._warned = True
                        print(
                            f"shoal: could not record job state in the control plane: {error}",
                            file=sys.stderr,
                        )
                    if not final:
                        self._requeue(batch)
                    elif attempt < 2:
                        time.sleep(0.2)

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        """Put a failed batch's puts back (summaries only if no newer one is waiting)."""
        with self._lock:
            for op in batch:
                put = op.get("put")
                if put is None:
                    key = op["delete"]["key"]
                    if key.startswith(TASKS_PREFIX):
                        self._forget.add(key[len(TASKS_PREFIX) :].rstrip("/"))
                    else:
                        self._drivers.setdefault(key[len(DRIVERS_PREFIX) :], None)
                    continue
                key = put["key"]
                if key.startswith(DRIVERS_PREFIX):
                    self._drivers.setdefault(key[len(DRIVERS_PREFIX) :], put["value"])
                    continue
                value = json.loads(put["value"])
                if key.startswith(JOBS_PREFIX):
                    self._summaries.setdefault(key[len(JOBS_PREFIX) :], value)
                else:
                    job_id = key[len(TASKS_PREFIX) :].rsplit("/", 1)[0]
                    self._chunks.setdefault(job_id, {}).update(value)


def _put(key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    return {"put": {"key": key, "value": json.dumps(value, separators=(",", ":"))}}


def _split(chunk: dict[str, str | None]) -> Iterator[dict[str, str | None]]:
    part: dict[str, str | None] = {}
    size = 0
    for index, encoded in chunk.items():
        weight = len(index) + (len(encoded) if encoded else 4) + 8
        if part and size + weight > _MAX_TXN_BYTES // 2:
            yield part
            part, size = {}, 0
        part[index] = encoded
        size += weight
    if part:
        yield part


def _batches(ops: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for op in ops:
        weight = len(json.dumps(op))
        if batch and (len(batch) >= _MAX_TXN_OPS or size + weight > _MAX_TXN_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(op)
        size += weight
    if batch:
        yield batch
