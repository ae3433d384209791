"""The driver core shared by the ``local`` and ``shoal`` executors: the scheduler's I/O shell.

Both executors drive the pure scheduler the same way, from the caller's thread: a loop
turns what arrives into scheduler events, carries out the instructions that come back,
feeds a ``Tick`` at least every ``tick`` seconds (and when a delayed retry falls due), and
merges results in the driver as they arrive (``RunMerger``). ``DriverCore`` holds that
logic; an executor supplies only its transport:

* ``_poll(timeout)`` waits for I/O and handles it; ``_flush()`` sends queued attempts;
  ``_shut_down()`` lets go of the workers (``close``);
* ``_run_task`` / ``_cancel_task`` place and stop an attempt; ``_drop`` tells workers to
  forget a job's function;
* optional hooks: ``_housekeeping`` (every tick), ``_ended`` and ``_forgot`` (a job ended,
  a job was forgotten).

Attempts travel in *lanes* (a local worker process, a slot process of a shoal worker):
each runs its attempts in order, so the driver keeps each lane's queue and infers starts
(the attempt behind the one that just finished started when that one ended).

Forgetting: once ``wait`` has returned a job's result (or raised its error) the job is
forgotten -- its run and task maps go, and the scheduler is told (``ForgetJob``) -- so a
long-lived executor does not grow with the jobs it has run. A lane's queue holds
``(job_no, index, attempt)`` keys, which need no run to be kept in order: a late result
of a forgotten job (an attempt cancelled while only queued still reports) is taken off
its lane and otherwise ignored.

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
from typing import Any, Self

from ._report import build_report, hand_over, report_progress
from ._serialize import dumps_data, dumps_function
from .aggregate import RunMerger
from .errors import ExecutorError, JobError
from .errors import JobFailed as JobFailedError
from .job import Job, JobReport, JobResult, Progress
from .scheduler import (
    CancelJob,
    CancelTask,
    Event,
    ForgetJob,
    Instruction,
    JobDone,
    JobFailed,
    RunTask,
    Scheduler,
    TaskFailed,
    TaskFinished,
    TaskSpec,
    TaskStarted,
    Tick,
)

__all__ = ["LIVE", "PROTOCOL", "DriverCore", "Key", "Lane", "Run", "encode_run"]

PROTOCOL = pickle.HIGHEST_PROTOCOL
LIVE = ("running", "cancelling")  # run states in which a job has not ended
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
    state: str = "running"  # running | cancelling | done | failed | cancelled | interrupted
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


class DriverCore:
    """The scheduler-driving loop and job bookkeeping of an executor (see the module doc)."""

    name = "driver"

    def __init__(self, scheduler: Scheduler, tick: float) -> None:
        self._scheduler = scheduler
        self._tick = tick
        self._runs: dict[str, Run] = {}
        self._by_no: dict[int, Run] = {}
        self._task_ref: dict[str, tuple[Run, int]] = {}
        self._pids: dict[str, int | None] = {}  # scheduler worker id -> pid, for reports
        self._events: deque[Event] = deque()
        self._busy = False
        self._touched: set[str] = set()  # jobs whose progress changed since the last report
        self._seq = 0
        self._next_tick = 0.0
        self._closed = False

    # -- the transport (an executor's part) --

    def _poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for I/O and handle what arrived."""
        raise NotImplementedError

    def _flush(self) -> None:
        """Send every lane its new attempts."""
        raise NotImplementedError

    def _run_task(self, instruction: RunTask, run: Run, index: int) -> None:
        raise NotImplementedError

    def _cancel_task(self, instruction: CancelTask, key: Key) -> None:
        raise NotImplementedError

    def _drop(self, run: Run) -> None:
        """Tell the lanes holding ``run``'s function (and with nothing unsent) to drop it."""
        raise NotImplementedError

    def _shut_down(self) -> None:
        """Release the workers and everything else (called once, by ``close``)."""
        raise NotImplementedError

    def _housekeeping(self, now: float) -> None:
        """Called once per tick, before the ``Tick`` is fed."""

    def _ended(self, run: Run) -> None:
        """Called when a run has just ended (done, failed or cancelled)."""

    def _forgot(self, run: Run) -> None:
        """Called when a run has just been forgotten."""

    # -- the public API --

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop using the workers (see ``_shut_down``); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._shut_down()

    def wait(self, job_ids: Sequence[str], *, progress: Progress | None = None) -> list[JobResult]:
        """Drive the workers until every job in ``job_ids`` has ended; see ``Executor``.

        A job whose result is returned (or whose error is raised) is forgotten.
        """
        self._check_open()
        runs = []
        for job_id in job_ids:
            run = self._runs.get(job_id)
            if run is None:
                raise JobError(f"unknown job id {job_id!r}")
            runs.append(run)
        self._drive(lambda: all(r.state not in LIVE for r in runs), progress)
        return hand_over(runs, self._result, self._forget)

    def run(self, job: Job, *, progress: Progress | None = None) -> JobResult:
        return self.wait([self.submit(job)], progress=progress)[0]

    def submit(self, job: Job) -> str:
        raise NotImplementedError

    # -- jobs --

    def _check_placeable(self, job: Job, spec: TaskSpec, who: str, offered: list[str]) -> None:
        if not self._scheduler.can_ever_place(spec):
            raise ExecutorError(
                f"job {job.name!r} needs resources {dict(job.resources)} per task, "
                f"which no {who} offers (workers offer {', '.join(offered) or 'nothing'})"
            )

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
        self._runs[job_id] = run
        self._by_no[run.job_no] = run
        ref = self._task_ref
        for index, task_id in enumerate(run.task_ids):
            ref[task_id] = (run, index)
        return run

    def _end_run(self, run: Run, state: str) -> None:
        run.state = state
        run.finished_at = time.monotonic()
        self._touched.add(run.job_id)
        self._drop(run)
        self._ended(run)

    def _forget(self, runs: Sequence[Run]) -> None:
        """Drop ended runs from every map, here and in the scheduler."""
        for run in runs:
            if self._runs.get(run.job_id) is not run:
                continue  # given twice to the same wait
            del self._runs[run.job_id]
            del self._by_no[run.job_no]
            ref = self._task_ref
            for task_id in run.task_ids:
                del ref[task_id]
            self._touched.discard(run.job_id)
            self._drop(run)  # lanes that had unsent attempts when it ended
            if run.scheduled:
                self._feed(ForgetJob(run.job_id, f"forget-{run.job_id}"))
            self._forgot(run)

    # -- the loop --

    def _drive(self, done: Callable[[], bool], progress: Progress | None) -> None:
        clock = time.monotonic
        while True:
            self._flush()
            self._report(progress)
            if done():
                return
            now = clock()
            if now >= self._next_tick:
                self._next_tick = now + self._tick
                self._housekeeping(now)
                self._feed(Tick(now))
                continue
            timeout = self._next_tick - now
            wake = self._scheduler.next_wakeup()
            if wake is not None:
                timeout = min(timeout, max(0.0, wake - now))
            self._poll(timeout)
            if wake is not None and clock() >= wake:
                self._feed(Tick(clock()))

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

    # -- events and instructions --

    def _feed(self, event: Event) -> None:
        """Queue ``event`` and, unless already doing so, process the queue to empty."""
        self._events.append(event)
        if not self._busy:
            self._process_events()

    def _process_events(self) -> None:
        self._busy = True
        try:
            events, handle = self._events, self._scheduler.handle
            while events:
                for instruction in handle(events.popleft()):
                    self._execute(instruction)
        finally:
            self._busy = False

    def _execute(self, instruction: Instruction) -> None:
        if type(instruction) is RunTask:
            run, index = self._task_ref[instruction.task_id]
            self._run_task(instruction, run, index)
        elif isinstance(instruction, CancelTask):
            run, index = self._task_ref[instruction.task_id]
            self._cancel_task(instruction, (run.job_no, index, instruction.attempt))
        elif isinstance(instruction, JobDone):
            self._end_run(self._runs[instruction.job_id], "done")
        elif isinstance(instruction, JobFailed):
            run = self._runs[instruction.job_id]
            cancelled = run.state == "cancelling" and not instruction.task_id
            run.error = JobFailedError(
                run.job.name, instruction.task_id, instruction.attempts, instruction.error
            )
            self._end_run(run, "cancelled" if cancelled else "failed")

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

    def _report(self, progress: Progress | None) -> None:
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        report_progress(progress, touched, self._runs)

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorError("this executor is closed")

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
