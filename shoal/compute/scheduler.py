"""The job scheduler's decisions, as a pure state machine (no I/O, no clock, no randomness).

Theory of operation
-------------------
An executor (the I/O shell) turns everything that happens -- a job submitted, a worker
joining or dying, a task starting, finishing or failing, time passing -- into an event and
calls ``Scheduler.handle(event)``, the one entry point that mutates state. It gets back a
list of instructions (run this attempt of a task on that worker, cancel that attempt, this
job is done, that job failed) and carries them out in order. Time only arrives as ``now``
on the events, so the same events always give the same instructions; with
``record=True`` the scheduler keeps every event in ``log`` and ``replay(log)`` rebuilds
the run exactly. (The event and instruction types live in ``events`` and are
re-exported here.) Every event carries a ``stimulus_id`` (the driver's name for it; left
empty, the scheduler numbers it ``#n`` in arrival order, which is just as unique); each
task keeps a *story* (the lines of what happened to it, tagged with the stimulus that
caused them) for debugging. ``validate()`` checks every invariant of the state (each
task in exactly one state, live attempts on known workers, resource sums, queues holding
only ready tasks, nothing left of a forgotten job; see ``_invariants``);
``Scheduler(validate=True)`` runs it after every event, as the tests do.

A task is run as *attempts*, numbered 1, 2, ... per task. An attempt is *live* from its
``RunTask`` until it finishes, fails, is cancelled or its worker is lost. Anything an
executor reports about an attempt that is no longer live is stale: it changes nothing and
is written in the story as ignored. So "first result wins" needs no coordination: the
first ``TaskFinished`` ends the task and cancels the other live copy; the loser's late
result is stale. A long-lived executor sends ``ForgetJob`` once a job has ended and its
result was handed over: the job and its tasks are dropped, and anything reported later
about them (an attempt cancelled while queued on a worker still reports) is stale too.

Rules
-----
1. Order. Jobs are served by effective priority = ``priority + aging * waiting time``,
   FIFO among equals. Every waiting job ages at the same rate, so the comparison of two
   jobs never changes with time (``p1 + a(t - s1) > p2 + a(t - s2)`` iff
   ``p1 - a*s1 > p2 - a*s2``): the key is fixed at submission and a low-priority job
   that has waited ``(p2 - p1) / aging`` seconds overtakes a newcomer -- no starvation.
   Within a job tasks go in partition order, retries ahead of untried tasks.
2. Placement. A task goes only to a worker whose resources (``cpu``, ``memory``, any
   custom label) cover its needs, summed over the tasks occupying the worker's slots, and
   which has a free slot; among those, its locality hint (a worker id) if that worker
   fits, else the least-loaded one (ties: the worker that joined first). A job whose next
   task fits nowhere does not block lower-priority jobs whose tasks do fit.
3. Prefetch. Short tasks spend more time on the round trip to the driver than running, so
   a worker may also hold up to ``prefetch`` *queued* attempts behind its slots, run in
   order by the worker -- but only for jobs whose median finished task took less than
   ``prefetch_under`` seconds (long tasks gain nothing from queueing and would delay
   higher priorities and stragglers). A queued attempt takes a slot when one frees; its
   resources are then counted even if that over-commits a multi-slot worker.
4. Retries. A failed attempt is retried after ``backoff * 2**(failures - 1)`` seconds
   (at most ``max_backoff``) until it has failed ``retries + 1`` times; then its job
   fails with the task's last error text and every live attempt of the job is cancelled.
5. Worker loss. Every live attempt on a lost worker is rescheduled at once. One that had
   started counts as a failure (so a task that crashes every worker is not retried for
   ever); one still queued does not.
6. Timeouts. An attempt that has run (since its ``TaskStarted``; a repeated start report
   changes nothing) for its task's ``timeout`` is cancelled on the next ``Tick`` and
   counts as a failure (then rule 4). ``next_wakeup`` names the earliest such deadline,
   so a driver can Tick right then.
7. Stragglers. On a ``Tick``, a started attempt whose job has at least
   ``straggler_min_finished`` finished tasks and that has run longer than
   ``straggler_factor`` x the job's median duration (and ``straggler_min_runtime``) gets
   one speculative copy on another worker with a free slot, placed before any other
   task. The first of the two to finish wins; the other is cancelled.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._invariants import violations
from .errors import ComputeError
from .events import (
    AttemptOutcome,
    AttemptView,
    CancelJob,
    CancelTask,
    Event,
    ForgetJob,
    Instruction,
    JobDone,
    JobFailed,
    JobState,
    JobSubmitted,
    RunTask,
    SchedulerConfig,
    StoryLine,
    TaskFailed,
    TaskFinished,
    TaskSpec,
    TaskStarted,
    TaskState,
    Tick,
    WorkerJoined,
    WorkerLost,
)

__all__ = [
    "AttemptOutcome",
    "AttemptView",
    "CancelJob",
    "CancelTask",
    "Event",
    "ForgetJob",
    "Instruction",
    "JobDone",
    "JobFailed",
    "JobState",
    "JobSubmitted",
    "RunTask",
    "Scheduler",
    "SchedulerConfig",
    "StoryLine",
    "TaskFailed",
    "TaskFinished",
    "TaskSpec",
    "TaskStarted",
    "TaskState",
    "Tick",
    "WorkerJoined",
    "WorkerLost",
    "replay",
]
_EPSILON = 1e-9  # resource sums are floats: tolerate rounding


# --- internal state -----------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Attempt:
    task: _Task
    number: int
    worker: _Worker
    speculative: bool
    assigned_at: float
    started_at: float | None = None
    ended_at: float | None = None
    outcome: AttemptOutcome = AttemptOutcome.LIVE
    error: str = ""


@dataclass(slots=True, eq=False)
class _Task:
    spec: TaskSpec
    job: _Job
    state: TaskState = TaskState.PENDING
    attempts: list[_Attempt] = field(default_factory=list)
    live: dict[int, _Attempt] = field(default_factory=dict)
    failures: int = 0
    speculated: bool = False
    story: list[StoryLine] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Job:
    job_id: str
    priority: float
    submitted_at: float
    key: tuple[float, int]
    tasks: list[_Task] = field(default_factory=list)
    pending: deque[_Task] = field(default_factory=deque)
    remaining: int = 0
    durations: list[float] = field(default_factory=list)  # sorted, for the median
    state: JobState = JobState.RUNNING

    def median(self) -> float:
        d = self.durations
        n = len(d)
        return d[n // 2] if n % 2 else (d[n // 2 - 1] + d[n // 2]) / 2


@dataclass(slots=True, eq=False)
class _Worker:
    worker_id: str
    resources: Mapping[str, float]
    slots: int
    order: int
    running: list[_Attempt] = field(default_factory=list)  # occupying slots, in start order
    queued: deque[_Attempt] = field(default_factory=deque)  # prefetched, run after `running`
    used: dict[str, float] = field(default_factory=dict)

    def can_ever_fit(self, need: Mapping[str, float]) -> bool:
        res = self.resources
        return all(amount <= res.get(name, 0) + _EPSILON for name, amount in need.items())

    def fits_now(self, need: Mapping[str, float]) -> bool:
        # Called for every placement: a plain loop, no generator (this is the hot path).
        if len(self.running) >= self.slots:
            return False
        res, used = self.resources, self.used
        for name, amount in need.items():
            if used.get(name, 0) + amount > res.get(name, 0) + _EPSILON:
                return False
        return True

    def occupy(self, attempt: _Attempt) -> None:
        self.running.append(attempt)
        used = self.used
        for name, amount in attempt.task.spec.resources.items():
            used[name] = used.get(name, 0) + amount

    def load(self) -> float:
        return (len(self.running) + len(self.queued)) / self.slots


# --- the scheduler ------------------------------------------------------------------------


class Scheduler:
    """Decides where and when every task runs; see the module docstring for the rules."""

    def __init__(
        self, config: SchedulerConfig | None = None, *, record: bool = False, validate: bool = False
    ) -> None:
        self.config = config or SchedulerConfig()
        self.log: list[Event] | None = [] if record else None
        self._validate = validate
        self._jobs: dict[str, _Job] = {}
        self._order: list[_Job] = []  # running jobs, best effective priority first
        self._tasks: dict[str, _Task] = {}
        self._workers: dict[str, _Worker] = {}
        self._delayed: list[tuple[float, int, str]] = []  # (ready_at, seq, task_id) heap
        # (started_at + timeout, push number, attempt) of started attempts with a timeout;
        # an entry outlives its attempt (skipped when popped): a heap cannot drop the middle.
        self._deadlines: list[tuple[float, int, _Attempt]] = []
        self._pushes = 0
        self._stragglers: list[_Attempt] = []  # flagged, waiting for a free slot elsewhere
        self._now = 0.0
        self._seq = 0
        self._joined = 0

    # -- the entry point --

    def handle(self, event: Event) -> list[Instruction]:
        """Apply one event; return what the executor must do, in order."""
        self._seq += 1
        if self.log is not None:
            self.log.append(event)
        out: list[Instruction] = []
        _HANDLERS[type(event)](self, event, out)
        if self._validate:
            self.validate()
        return out

    def validate(self) -> None:
        """Check every invariant of the state; raise ``AssertionError`` naming those broken.

        A debugging aid (``Scheduler(validate=True)`` runs it after every event, as the
        tests do): it walks all of the state, so it costs O(jobs + tasks + workers).
        """
        broken = violations(self)
        if broken:
            raise AssertionError("scheduler invariants broken:\n  " + "\n  ".join(broken))

    # -- queries (pure reads) --

    def is_live(self, task_id: str, attempt: int) -> bool:
        """Whether a result of this attempt would be accepted (first result wins)."""
        task = self._tasks.get(task_id)
        return task is not None and attempt in task.live

    def story(self, task_id: str) -> tuple[StoryLine, ...]:
        return tuple(self._task(task_id).story)

    def attempts(self, task_id: str) -> tuple[AttemptView, ...]:
        return tuple(
            AttemptView(
                task_id=task_id,
                attempt=a.number,
                worker_id=a.worker.worker_id,
                speculative=a.speculative,
                assigned_at=a.assigned_at,
                started_at=a.started_at,
                ended_at=a.ended_at,
                outcome=a.outcome,
                error=a.error,
            )
            for a in self._task(task_id).attempts
        )

    def task_state(self, task_id: str) -> TaskState:
        return self._task(task_id).state

    def job_state(self, job_id: str) -> JobState:
        return self._jobs[job_id].state

    def progress(self, job_id: str) -> tuple[int, int]:
        """(finished tasks, all tasks) of a job."""
        job = self._jobs[job_id]
        return len(job.tasks) - job.remaining, len(job.tasks)

    def workers(self) -> dict[str, int]:
        """Worker id -> number of live attempts on it."""
        return {w.worker_id: len(w.running) + len(w.queued) for w in self._workers.values()}

    def next_wakeup(self) -> float | None:
        """The earliest time a ``Tick`` has work: a delayed retry falls due, or a running
        attempt reaches its timeout (the driver's next Tick, at the latest).

        Drops the deadlines of attempts already over from the top of their heap (no
        decision changes), so a finished attempt does not cause a needless Tick.
        """
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].outcome is not AttemptOutcome.LIVE:
            heapq.heappop(deadlines)
        wake = self._delayed[0][0] if self._delayed else None
        if deadlines and (wake is None or deadlines[0][0] < wake):
            wake = deadlines[0][0]
        return wake

    def can_ever_place(self, spec: TaskSpec) -> bool:
        """Whether some current worker could run this task (resources-wise) at all."""
        return any(w.can_ever_fit(spec.resources) for w in self._workers.values())

    # -- handlers --

    def _on_job_submitted(self, e: JobSubmitted, out: list[Instruction]) -> None:
        if e.job_id in self._jobs:
            raise ComputeError(f"job {e.job_id!r} was already submitted")
        self._advance(e.submitted_at)
        job = _Job(
            job_id=e.job_id,
            priority=e.priority,
            submitted_at=e.submitted_at,
            key=(-(e.priority - self.config.aging * e.submitted_at), self._seq),
        )
        sid = self._sid(e.stimulus_id)
        for spec in e.tasks:
            if spec.task_id in self._tasks:
                raise ComputeError(f"task id {spec.task_id!r} is already in use")
            task = _Task(spec=spec, job=job)
            task.story.append(StoryLine(sid, "submitted", 0, "", e.submitted_at, e.job_id))
            self._tasks[spec.task_id] = task
            job.tasks.append(task)
            job.pending.append(task)
        job.remaining = len(job.tasks)
        self._jobs[e.job_id] = job
        bisect.insort(self._order, job, key=lambda j: j.key)
        self._schedule(sid, out)

    def _on_worker_joined(self, e: WorkerJoined, out: list[Instruction]) -> None:
        if e.worker_id in self._workers:
            raise ComputeError(f"worker {e.worker_id!r} has already joined")
        self._joined += 1
        self._workers[e.worker_id] = _Worker(e.worker_id, dict(e.resources), e.slots, self._joined)
        sid = self._sid(e.stimulus_id)
        self._place_stragglers(sid, out)
        self._schedule(sid, out)

    def _on_worker_lost(self, e: WorkerLost, out: list[Instruction]) -> None:
        worker = self._workers.pop(e.worker_id, None)
        if worker is None:
            return
        sid = self._sid(e.stimulus_id)
        lost = [*worker.running, *worker.queued]
        for attempt in lost:  # all off the worker first, so a job failure cancels none of them
            self._end(attempt, AttemptOutcome.LOST, sid)
        for attempt in lost:
            task = attempt.task
            if task.state is not TaskState.ACTIVE or task.live:
                continue  # another copy is still running
            if attempt.started_at is not None:
                error = f"worker {e.worker_id} was lost while running attempt {attempt.number}"
                task.failures += 1
                attempt.error = error
                if task.failures > task.spec.retries:
                    self._fail_job(task.job, task, error, sid, out)
                    continue
            task.state = TaskState.PENDING
            task.job.pending.appendleft(task)
        self._place_stragglers(sid, out)
        self._schedule(sid, out)

    def _on_task_started(self, e: TaskStarted, out: list[Instruction]) -> None:
        attempt = self._live(e.task_id, e.attempt, e.stimulus_id, "started", e.now)
        if attempt is None:
            return
        sid = self._sid(e.stimulus_id)
        if attempt.started_at is not None:  # a repeated report: the first start counts
            attempt.task.story.append(
                StoryLine(sid, "ignored", e.attempt, e.worker_id, e.now, "duplicate start")
            )
            return
        self._advance(e.now)
        attempt.started_at = e.now
        timeout = attempt.task.spec.timeout
        if timeout is not None:
            self._pushes += 1
            heapq.heappush(self._deadlines, (e.now + timeout, self._pushes, attempt))
        attempt.task.story.append(StoryLine(sid, "started", e.attempt, e.worker_id, e.now))

    def _on_task_finished(self, e: TaskFinished, out: list[Instruction]) -> None:
        attempt = self._live(e.task_id, e.attempt, e.stimulus_id, "finished", e.now)
        if attempt is None:
            return
        self._advance(e.now)
        sid = self._sid(e.stimulus_id)
        task, job = attempt.task, attempt.task.job
        task.state = TaskState.FINISHED
        started = attempt.started_at if attempt.started_at is not None else attempt.assigned_at
        bisect.insort(job.durations, max(0.0, e.now - started))
        self._end(attempt, AttemptOutcome.FINISHED, sid, at=e.now)
        for other in list(task.live.values()):
            self._cancel(other, "another attempt finished first", sid, out)
        job.remaining -= 1
        if job.remaining == 0:
            job.state = JobState.DONE
            self._order.remove(job)
            out.append(JobDone(job.job_id))
        self._release_due(sid)
        self._place_stragglers(sid, out)
        self._schedule(sid, out)

    def _on_task_failed(self, e: TaskFailed, out: list[Instruction]) -> None:
        attempt = self._live(e.task_id, e.attempt, e.stimulus_id, "failed", e.now)
        if attempt is None:
            return
        self._advance(e.now)
        sid = self._sid(e.stimulus_id)
        self._end(attempt, AttemptOutcome.FAILED, sid, at=e.now, error=e.error)
        self._after_failure(attempt.task, e.error, sid, out)
        self._release_due(sid)
        self._place_stragglers(sid, out)
        self._schedule(sid, out)

    def _on_tick(self, e: Tick, out: list[Instruction]) -> None:
        self._advance(e.now)
        sid = self._sid(e.stimulus_id)
        self._release_due(sid)
        self._check_timeouts(sid, out)
        self._flag_stragglers()
        self._place_stragglers(sid, out)
        self._schedule(sid, out)

    def _on_cancel_job(self, e: CancelJob, out: list[Instruction]) -> None:
        job = self._jobs.get(e.job_id)
        if job is None or job.state is not JobState.RUNNING:
            return
        sid = self._sid(e.stimulus_id)
        self._fail_job(job, None, e.error, sid, out)
        self._schedule(sid, out)

    def _on_forget_job(self, e: ForgetJob, out: list[Instruction]) -> None:
        job = self._jobs.get(e.job_id)
        if job is None:
            raise ComputeError(f"unknown job {e.job_id!r}")
        if job.state is JobState.RUNNING:
            raise ComputeError(f"job {e.job_id!r} is still running; only an ended job is forgotten")
        del self._jobs[e.job_id]
        tasks = self._tasks
        for task in job.tasks:
            del tasks[task.spec.task_id]
        # Its attempts are all over (none is on a worker). Drop what the timer heaps still
        # hold of it, or a retry left over from this job could release a task of a later
        # job that reuses the id.
        if self._delayed:
            gone = {task.spec.task_id for task in job.tasks}
            self._delayed = [d for d in self._delayed if d[2] not in gone]
            heapq.heapify(self._delayed)
        if self._deadlines:
            self._deadlines = [d for d in self._deadlines if d[2].task.job is not job]
            heapq.heapify(self._deadlines)
        if self._stragglers:
            self._stragglers = [a for a in self._stragglers if a.task.job is not job]

    # -- rules --

    def _after_failure(self, task: _Task, error: str, sid: str, out: list[Instruction]) -> None:
        task.failures += 1
        if task.failures > task.spec.retries:
            self._fail_job(task.job, task, error, sid, out)
            return
        if task.live:
            return  # a speculative copy is still running; it may yet succeed
        delay = min(self.config.max_backoff, task.spec.backoff * 2 ** (task.failures - 1))
        ready_at = self._now + delay
        task.state = TaskState.WAITING
        task.story.append(StoryLine(sid, "retry", 0, "", self._now, f"at {ready_at:.6f}"))
        heapq.heappush(self._delayed, (ready_at, self._seq, task.spec.task_id))
        self._release_due(sid)

    def _fail_job(
        self, job: _Job, task: _Task | None, error: str, sid: str, out: list[Instruction]
    ) -> None:
        job.state = JobState.FAILED
        self._order.remove(job)
        job.pending.clear()
        for t in job.tasks:
            for attempt in list(t.live.values()):
                self._cancel(attempt, "job failed", sid, out)
            if t.state is not TaskState.FINISHED:
                t.state = TaskState.FAILED
        if task is None:
            out.append(JobFailed(job.job_id, "", error, 0))
        else:
            out.append(JobFailed(job.job_id, task.spec.task_id, error, task.failures))

    def _release_due(self, sid: str) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= self._now + _EPSILON:
            _, _, task_id = heapq.heappop(delayed)
            task = self._tasks.get(task_id)
            if task is None:
                continue  # its job was forgotten
            if task.state is TaskState.WAITING and task.job.state is JobState.RUNNING:
                task.state = TaskState.PENDING
                task.job.pending.appendleft(task)

    def _check_timeouts(self, sid: str, out: list[Instruction]) -> None:
        deadlines, now = self._deadlines, self._now
        expired: list[_Attempt] = []
        while deadlines and deadlines[0][0] <= now:
            expired.append(heapq.heappop(deadlines)[2])
        for attempt in expired:
            if attempt.outcome is not AttemptOutcome.LIVE:
                continue  # its job failed while handling an earlier one
            spec = attempt.task.spec
            error = (
                f"task {spec.task_id} attempt {attempt.number} timed out after "
                f"{spec.timeout}s on worker {attempt.worker.worker_id}"
            )
            self._cancel(attempt, "timeout", sid, out)
            attempt.error = error
            self._after_failure(attempt.task, error, sid, out)

    def _flag_stragglers(self) -> None:
        cfg, now = self.config, self._now
        limits: dict[str, float] = {}
        for job in self._order:
            if len(job.durations) >= cfg.straggler_min_finished:
                limits[job.job_id] = max(
                    cfg.straggler_factor * job.median(), cfg.straggler_min_runtime
                )
        if not limits:
            return
        for worker in self._workers.values():
            for a in worker.running:
                task = a.task
                limit = limits.get(task.job.job_id)
                if (
                    limit is not None
                    and a.started_at is not None
                    and task.spec.speculative
                    and not task.speculated
                    and len(task.live) == 1
                    and now - a.started_at > limit
                    and a not in self._stragglers
                ):
                    self._stragglers.append(a)

    def _place_stragglers(self, sid: str, out: list[Instruction]) -> None:
        if not self._stragglers:
            return
        waiting: list[_Attempt] = []
        for a in self._stragglers:
            task = a.task
            if (
                a.outcome is not AttemptOutcome.LIVE
                or task.state is not TaskState.ACTIVE
                or task.speculated
            ):
                continue
            need = task.spec.resources
            best: _Worker | None = None
            for w in self._workers.values():
                if w is a.worker or not w.fits_now(need):
                    continue
                if best is None or (w.load(), w.order) < (best.load(), best.order):
                    best = w
            if best is None:
                waiting.append(a)
                continue
            task.speculated = True
            self._assign(task, best, False, True, sid, out)
        self._stragglers = waiting

    def _schedule(self, sid: str, out: list[Instruction]) -> None:
        if not self._workers:
            return
        prefetch = self.config.prefetch
        for job in self._order:
            pending = job.pending
            if not pending:
                continue
            queue_ok = (
                prefetch > 0 and bool(job.durations) and job.median() < self.config.prefetch_under
            )
            while pending:
                task = pending[0]
                placed = self._pick(task, queue_ok)
                if placed is None:
                    break
                pending.popleft()
                self._assign(task, placed[0], placed[1], False, sid, out)

    def _pick(self, task: _Task, queue_ok: bool) -> tuple[_Worker, bool] | None:
        """The worker for ``task`` and whether the attempt is queued there (prefetch)."""
        need = task.spec.resources
        prefer = task.spec.locality
        prefetch = self.config.prefetch
        best: _Worker | None = None
        best_key: tuple[bool, float, int] | None = None
        for w in self._workers.values():
            if w.fits_now(need):
                queued = False
            elif queue_ok and len(w.queued) < prefetch and w.can_ever_fit(need):
                queued = True
            else:
                continue
            if prefer is not None and w.worker_id == prefer:
                return w, queued
            key = (queued, w.load(), w.order)
            if best_key is None or key < best_key:
                best, best_key = w, key
        if best is None or best_key is None:
            return None
        return best, best_key[0]

    # -- bookkeeping --

    def _assign(
        self,
        task: _Task,
        worker: _Worker,
        queued: bool,
        speculative: bool,
        sid: str,
        out: list[Instruction],
    ) -> None:
        number = len(task.attempts) + 1
        attempt = _Attempt(task, number, worker, speculative, self._now)
        task.attempts.append(attempt)
        task.live[number] = attempt
        task.state = TaskState.ACTIVE
        if queued:
            worker.queued.append(attempt)
        else:
            worker.occupy(attempt)
        detail = "speculative" if speculative else ("queued" if queued else "")
        task.story.append(StoryLine(sid, "run", number, worker.worker_id, self._now, detail))
        out.append(RunTask(task.spec.task_id, number, worker.worker_id, speculative))

    def _cancel(self, attempt: _Attempt, reason: str, sid: str, out: list[Instruction]) -> None:
        started = attempt.started_at is not None and attempt in attempt.worker.running
        out.append(
            CancelTask(
                attempt.task.spec.task_id,
                attempt.number,
                attempt.worker.worker_id,
                started,
                reason,
            )
        )
        self._end(attempt, AttemptOutcome.CANCELLED, sid, detail=reason)

    def _end(
        self,
        attempt: _Attempt,
        outcome: AttemptOutcome,
        sid: str,
        *,
        at: float | None = None,
        error: str = "",
        detail: str = "",
    ) -> None:
        """Take a live attempt off its task and worker; promote a queued attempt if any."""
        task, worker = attempt.task, attempt.worker
        attempt.outcome = outcome
        attempt.ended_at = self._now if at is None else at
        attempt.error = error
        del task.live[attempt.number]
        task.story.append(
            StoryLine(
                sid, outcome.value, attempt.number, worker.worker_id, attempt.ended_at, detail
            )
        )
        if attempt in worker.queued:
            worker.queued.remove(attempt)
            return
        worker.running.remove(attempt)
        used = worker.used
        for name, amount in task.spec.resources.items():
            used[name] = used.get(name, 0) - amount
        while worker.queued and len(worker.running) < worker.slots:
            worker.occupy(worker.queued.popleft())

    def _live(
        self, task_id: str, number: int, stimulus_id: str, what: str, now: float
    ) -> _Attempt | None:
        task = self._tasks.get(task_id)
        if task is None:
            return None  # its job was forgotten: a late report of an attempt, stale
        attempt = task.live.get(number)
        if attempt is None:
            sid = self._sid(stimulus_id)
            task.story.append(StoryLine(sid, "ignored", number, "", now, f"stale {what}"))
        return attempt

    def _task(self, task_id: str) -> _Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise ComputeError(f"unknown task {task_id!r}") from None

    def _advance(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _sid(self, stimulus_id: str) -> str:
        return stimulus_id or f"#{self._seq}"


_HANDLERS: dict[type[Any], Callable[[Scheduler, Any, list[Instruction]], None]] = {
    JobSubmitted: Scheduler._on_job_submitted,
    WorkerJoined: Scheduler._on_worker_joined,
    WorkerLost: Scheduler._on_worker_lost,
    TaskStarted: Scheduler._on_task_started,
    TaskFinished: Scheduler._on_task_finished,
    TaskFailed: Scheduler._on_task_failed,
    Tick: Scheduler._on_tick,
    CancelJob: Scheduler._on_cancel_job,
    ForgetJob: Scheduler._on_forget_job,
}


def replay(
    events: Iterable[Event], config: SchedulerConfig | None = None, *, validate: bool = False
) -> tuple[Scheduler, list[Instruction]]:
    """Feed ``events`` to a fresh scheduler; return it and every instruction, in order."""
    scheduler = Scheduler(config, record=True, validate=validate)
    out: list[Instruction] = []
    for event in events:
        out.extend(scheduler.handle(event))
    return scheduler, out
