"""The driver core of the ``local`` and ``shoal`` executors: attempts in *lanes*.

Both executors run attempts in lanes (a local worker process, a slot process of a shoal
worker): each lane runs its attempts in order, so ``DriverCore`` keeps each lane's queue
and infers starts (the attempt behind the one that just finished started when that one
ended). It adds that to the scheduler loop (``_loop.SchedulerLoop``: events,
instructions, ticks, job bookkeeping) together with what both executors share: a job's
function pickled once and sent once per lane, results merged in the driver as they
arrive (``RunMerger``), reports built from the scheduler's attempts. An executor
supplies its transport:

* ``_poll(timeout)`` waits for I/O and handles it; ``_flush()`` sends queued attempts;
  ``_shut_down()`` lets go of the workers (``close``);
* ``_run_task`` / ``_cancel_task`` place and stop an attempt; ``_drop`` tells workers to
  forget a job's function;
* optional hooks: ``_housekeeping`` (every tick), ``_ended`` and ``_forgot`` (a job ended,
  a job was forgotten; call the core's first).

Forgetting: once ``wait`` has returned a job's result (or raised its error) the job is
forgotten -- its run and task maps go, and the scheduler is told (``ForgetJob``). A
lane's queue holds ``(job_no, index, attempt)`` keys, which need no run to be kept in
order: a late result of a forgotten job (an attempt cancelled while only queued still
reports) is taken off its lane and otherwise ignored.

No sockets or processes here: those stay in the executors.
"""

from __future__ import annotations

import contextlib
import pickle
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._loop import LIVE, RunState, SchedulerLoop
from ._report import build_report
from ._serialize import dumps_data, dumps_function
from .aggregate import RunMerger
from .errors import JobFailed as JobFailedError
from .job import Job, JobReport, JobResult
from .scheduler import (
    CancelJob,
    Scheduler,
    TaskFailed,
    TaskFinished,
    TaskSpec,
    TaskStarted,
)

__all__ = ["LIVE", "PROTOCOL", "DriverCore", "Key", "Lane", "Run", "RunState", "encode_run"]

PROTOCOL = pickle.HIGHEST_PROTOCOL
Key = tuple[int, int, int]  # (job_no, partition index, attempt)


@dataclass(slots=True, eq=False, kw_only=True)
class Lane:
    """One process that runs attempts in order, as the driver tracks it."""

    fifo: deque[Key] = field(default_factory=deque)  # attempts sent, in run order
    fns: set[int] = field(default_factory=set)  # jobs whose function it holds
    outbox: list[tuple[int, int, int, Any]] = field(default_factory=list)  # not yet sent
    new_fns: list[tuple[int, bytes]] = field(default_factory=list)  # to send with the outbox


@dataclass(slots=True, eq=False)
class Run:
    """One submitted job, as the driver tracks it."""

    job_no: int
    job_id: str
    job: Job
    partitions: list[Any]
    fn_bytes: bytes
    task_ids: list[str]
    merger: RunMerger
    submitted_at: float
    submitted_wall: float = 0.0
    restored: set[int] = field(default_factory=set)  # indexes whose result came from records
    scheduled: bool = True  # handed to the scheduler (not when every task was restored)
    finished_at: float | None = None
    state: RunState = RunState.RUNNING
    error: JobFailedError | None = None
    timing: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # index -> w, s, e
    done: int = 0
    result: JobResult | None = None


def encode_run(new_fns: list[tuple[int, bytes]], outbox: list[tuple[int, int, int, Any]]) -> bytes:
    """A lane's ``run`` message (see ``_slots``): plain pickle, cloudpickle if it must."""
    message = ("run", new_fns, outbox)
    try:
        return pickle.dumps(message, PROTOCOL)
    except Exception:
        return dumps_data(message)


class DriverCore(SchedulerLoop[Run]):
    """The lane bookkeeping of the local and shoal executors (see the module doc)."""

    def __init__(self, scheduler: Scheduler, tick: float) -> None:
        super().__init__(scheduler, tick)
        self._by_no: dict[int, Run] = {}
        self._pids: dict[str, int | None] = {}  # scheduler worker id -> pid, for reports

    # -- the transport (an executor's part, beyond the loop's) --

    def _drop(self, run: Run) -> None:
        """Tell the lanes holding ``run``'s function (and with nothing unsent) to drop it."""
        raise NotImplementedError

    # -- jobs --

    def _new_run(
        self, job: Job, job_id: str, partitions: list[Any], specs: Sequence[TaskSpec]
    ) -> Run:
        """Make and register the run of a job numbered ``self._seq``."""
        run = Run(
            job_no=self._seq,
            job_id=job_id,
            job=job,
            partitions=partitions,
            fn_bytes=dumps_function(job.map_fn, f"job {job.name!r}: map_fn"),
            task_ids=[s.task_id for s in specs],
            merger=RunMerger(len(partitions), job.combine),
            submitted_at=time.monotonic(),
        )
        self._register(run)
        self._by_no[run.job_no] = run
        return run

    def _ended(self, run: Run) -> None:
        self._drop(run)

    def _forgot(self, run: Run) -> None:
        del self._by_no[run.job_no]
        self._drop(run)  # lanes that had unsent attempts when it ended

    def _take_results(
        self,
        worker_id: str,
        fifo: deque[Key],
        batch: list[tuple[Any, ...]],
        offset: float = 0.0,
        checkpoints: list[tuple[str, int, Any]] | None = None,
        encode: Callable[[Any], Any] | None = None,
    ) -> None:
        """Turn a lane's batch of results into events; merge the accepted values.

        ``offset`` maps the worker's clock onto ours; with ``encode``, every accepted
        value is also appended to ``checkpoints`` as ``(job id, index, encode(value))``
        (encoded before merging: a combiner may change its arguments).
        """
        scheduler = self._scheduler
        by_no = self._by_no
        touched = self._touched
        feed = self._feed
        for job_no, index, attempt, ok, value, start, end in batch:
            key = (job_no, index, attempt)
            if fifo and fifo[0] == key:
                fifo.popleft()
            else:
                with contextlib.suppress(ValueError):
                    fifo.remove(key)
            at = end + offset
            run = by_no.get(job_no)
            if run is not None:  # else forgotten: a late result of a cancelled attempt
                task_id = run.task_ids[index]
                if ok:
                    if run.state in LIVE and scheduler.is_live(task_id, attempt):
                        run.timing[index] = (worker_id, start + offset, at)
                        run.done += 1
                        touched.add(run.job_id)
                        if encode is not None and checkpoints is not None:
                            checkpoints.append((run.job_id, index, encode(value)))
                        try:
                            run.merger.add(index, value)
                        except Exception:
                            error = "the combine function raised:\n" + traceback.format_exc()
                            feed(CancelJob(run.job_id, error, f"combine-{task_id}"))
                    feed(TaskFinished(task_id, attempt, worker_id, at))
                else:
                    feed(TaskFailed(task_id, attempt, worker_id, value, at))
            if fifo:
                head_no, head_index, head_attempt = fifo[0]
                head = by_no.get(head_no)
                if head is not None:
                    feed(TaskStarted(head.task_ids[head_index], head_attempt, worker_id, at))

    # -- lanes --

    def _enqueue(self, lane: Lane, worker_id: str, run: Run, index: int, attempt: int) -> None:
        """Queue an attempt on ``lane`` (sent by the next flush), its function if new there."""
        job_no = run.job_no
        if job_no not in lane.fns:
            lane.fns.add(job_no)
            lane.new_fns.append((job_no, run.fn_bytes))
        lane.outbox.append((job_no, index, attempt, run.partitions[index]))
        lane.fifo.append((job_no, index, attempt))
        if len(lane.fifo) == 1:
            self._events.append(
                TaskStarted(run.task_ids[index], attempt, worker_id, time.monotonic())
            )

    # -- reports --

    def _result(self, run: Run) -> JobResult:
        if run.result is None:
            run.result = JobResult(run.merger.result(), self._job_report(run))
        return run.result

    def _job_report(self, run: Run) -> JobReport:
        return build_report(
            self._scheduler,
            executor=self.name,
            job_id=run.job_id,
            name=run.job.name,
            state=run.state,
            task_ids=run.task_ids,
            timing=run.timing,
            submitted_at=run.submitted_at,
            finished_at=run.finished_at if run.finished_at is not None else time.monotonic(),
            pids=self._pids,
            restored=run.restored,
        )
