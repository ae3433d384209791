"""The scheduler's I/O shell, shared by the local, shoal and ray executors.

Every such executor drives the pure scheduler the same way, from the caller's thread:
``SchedulerLoop`` turns what arrives into scheduler events, carries out the instructions
that come back, feeds a ``Tick`` at least every ``tick`` seconds and whenever the
scheduler's next timer (a retry's backoff, an attempt's timeout) falls due, and keeps the
job bookkeeping every executor needs: runs by job id, task ids -> (run, partition index),
progress reports, and forgetting a job once ``wait`` has handed over its result
(``ForgetJob``), so a long-lived executor does not grow with the jobs it has run. So the
retry, backoff, timeout, priority and placement policy is the scheduler's, one policy for
every executor; an executor supplies only its transport:

* ``_poll(timeout)`` waits up to ``timeout`` for I/O and handles it (turning results into
  ``TaskStarted`` / ``TaskFinished`` / ``TaskFailed`` events with ``_feed``);
  ``_flush()`` sends what the instructions queued (optional); ``_shut_down()`` lets go
  of the workers (``close``);
* ``_run_task`` / ``_cancel_task`` start and stop an attempt;
* optional hooks: ``_housekeeping`` (every tick), ``_job_done`` (the scheduler said a job
  is done; the default ends the run), ``_ended`` and ``_forgot`` (a run ended, a run was
  forgotten), ``_result`` (a done run's ``JobResult``).

Events fed while instructions are being carried out are queued and handled in order
after the current one: the scheduler never sees a second event in the middle of one.
No sockets, processes or Ray here: those stay in the executors.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Generic, Protocol, Self, TypeVar

from ._report import hand_over, report_progress
from .errors import ExecutorError, JobError
from .errors import JobFailed as JobFailedError
from .job import Job, JobResult, Progress
from .scheduler import (
    CancelTask,
    Event,
    ForgetJob,
    Instruction,
    JobDone,
    JobFailed,
    RunTask,
    Scheduler,
    TaskSpec,
    Tick,
)

__all__ = ["LIVE", "RunState", "SchedulerLoop", "Tracked"]


class RunState(StrEnum):
    """Where a submitted job is, as the executor's driver sees it."""

    RUNNING = "running"
    CANCELLING = "cancelling"  # a cancel was requested; the scheduler is stopping it
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the executor was closed while it ran


LIVE = (RunState.RUNNING, RunState.CANCELLING)  # run states in which a job has not ended


class Tracked(Protocol):
    """What the loop reads and writes of an executor's run of a job."""

    job_id: str
    job: Job
    task_ids: list[str]
    state: RunState
    error: JobFailedError | None
    finished_at: float | None
    scheduled: bool  # handed to the scheduler (so it must be told to forget it)

    @property
    def done(self) -> int: ...

    @property
    def partitions(self) -> Sequence[Any]: ...


R = TypeVar("R", bound=Tracked)


class SchedulerLoop(Generic[R]):
    """The scheduler-driving loop and job bookkeeping of an executor (see the module doc)."""

    name = "driver"

    def __init__(self, scheduler: Scheduler, tick: float) -> None:
        self._scheduler = scheduler
        self._tick = tick
        self._runs: dict[str, R] = {}
        self._task_ref: dict[str, tuple[R, int]] = {}  # task id -> (run, partition index)
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
        """Send what the instructions just carried out have queued (if anything)."""

    def _run_task(self, instruction: RunTask, run: R, index: int) -> None:
        raise NotImplementedError

    def _cancel_task(self, instruction: CancelTask, run: R, index: int) -> None:
        raise NotImplementedError

    def _shut_down(self) -> None:
        """Release the workers and everything else (called once, by ``close``)."""
        raise NotImplementedError

    def _housekeeping(self, now: float) -> None:
        """Called once per tick, before the ``Tick`` is fed."""

    def _job_done(self, run: R) -> None:
        """The scheduler says every task of ``run`` finished."""
        self._end_run(run, RunState.DONE)

    def _ended(self, run: R) -> None:
        """Called when a run has just ended (done, failed or cancelled)."""

    def _forgot(self, run: R) -> None:
        """Called when a run has just been forgotten."""

    def _result(self, run: R) -> JobResult:
        """The ``JobResult`` of a run that ended without error."""
        raise NotImplementedError

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

    def submit(self, job: Job) -> str:
        raise NotImplementedError

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

    # -- jobs --

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorError("this executor is closed")

    def _check_placeable(self, job: Job, spec: TaskSpec, who: str, offered: list[str]) -> None:
        if not self._scheduler.can_ever_place(spec):
            raise ExecutorError(
                f"job {job.name!r} needs resources {dict(job.resources)} per task, "
                f"which no {who} offers (workers offer {', '.join(offered) or 'nothing'})"
            )

    def _register(self, run: R) -> None:
        """Track a new run under its job id and its tasks' ids."""
        self._runs[run.job_id] = run
        ref = self._task_ref
        for index, task_id in enumerate(run.task_ids):
            ref[task_id] = (run, index)

    def _end_run(self, run: R, state: RunState) -> None:
        run.state = state
        run.finished_at = time.monotonic()
        self._touched.add(run.job_id)
        self._ended(run)

    def _forget(self, runs: Sequence[R]) -> None:
        """Drop ended runs from every map, here and in the scheduler."""
        for run in runs:
            if self._runs.get(run.job_id) is not run:
                continue  # given twice to the same wait
            del self._runs[run.job_id]
            ref = self._task_ref
            for task_id in run.task_ids:
                del ref[task_id]
            self._touched.discard(run.job_id)
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
            self._cancel_task(instruction, run, index)
        elif isinstance(instruction, JobDone):
            self._job_done(self._runs[instruction.job_id])
        elif isinstance(instruction, JobFailed):
            run = self._runs[instruction.job_id]
            cancelled = run.state is RunState.CANCELLING and not instruction.task_id
            run.error = JobFailedError(
                run.job.name, instruction.task_id, instruction.attempts, instruction.error
            )
            self._end_run(run, RunState.CANCELLED if cancelled else RunState.FAILED)

    # -- reports --

    def _report(self, progress: Progress | None) -> None:
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        report_progress(progress, touched, self._runs)
