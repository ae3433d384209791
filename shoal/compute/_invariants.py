"""The invariants of the scheduler's state, as one function that lists those broken.

``Scheduler.validate()`` calls ``violations``; tests run it after every event (the model is
dask's ``validate_state``). It reads the scheduler's private state and changes nothing;
no I/O. Each check names the invariant in its message, so a failure says what broke:

* Jobs and tasks. The task map holds exactly the tasks of the known jobs (a forgotten job
  leaves nothing behind: no task, no timer entry, no straggler). ``_order`` holds exactly
  the running jobs, sorted by their fixed key. A job's ``remaining`` counts its unfinished
  tasks, ``durations`` (sorted) has one entry per finished task; a done job has only
  finished tasks, a failed one only finished or failed tasks, a running one none failed.
* Each task is in exactly one state, and the state agrees with the structures: PENDING
  iff it is in its job's queue (once), WAITING iff it has one delayed-retry entry, ACTIVE
  iff it has a live attempt (two only with a speculative copy), FINISHED with exactly one
  finished attempt; only ACTIVE tasks have live attempts. Attempts are numbered 1..n and
  ``live`` holds exactly those whose outcome is LIVE. A task of a running job has failed
  at most ``retries`` times.
* Workers. A live attempt is on its (known) worker, in exactly one of ``running`` (at
  most ``slots``) and ``queued`` (at most ``prefetch``); everything on a worker is live.
  ``used`` is the sum of the resources of the running attempts. A queued attempt waits
  only while its worker has no free slot or not enough resources for it.
* Timers. Every delayed-retry entry names a known task that is WAITING (or FAILED: its job
  failed while it waited). Every live, started attempt with a timeout has its deadline
  (``started_at + timeout``) in the deadline heap.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .events import AttemptOutcome, JobState, TaskState

if TYPE_CHECKING:
    from .scheduler import Scheduler, _Job, _Task, _Worker

__all__ = ["violations"]

_TOLERANCE = 1e-6  # resource sums are floats


def violations(s: Scheduler) -> list[str]:
    """Every invariant of ``s`` (see the module docstring) that does not hold, as text."""
    found: list[str] = []
    _check_jobs(s, found)
    delayed = Counter(task_id for _, _, task_id in s._delayed)
    for task in s._tasks.values():
        _check_task(s, task, delayed[task.spec.task_id], found)
    for worker_id, worker in s._workers.items():
        if worker.worker_id != worker_id:
            found.append(f"worker {worker.worker_id!r} is filed as {worker_id!r}")
        _check_worker(s, worker, found)
    _check_timers(s, delayed, found)
    return found


def _check_jobs(s: Scheduler, found: list[str]) -> None:
    tasks = s._tasks
    for job_id, job in s._jobs.items():
        if job.job_id != job_id:
            found.append(f"job {job.job_id!r} is filed as {job_id!r}")
        for task in job.tasks:
            if task.job is not job:
                found.append(f"task {task.spec.task_id} is in job {job_id} but names another")
            if tasks.get(task.spec.task_id) is not task:
                found.append(f"task {task.spec.task_id} of job {job_id} is not in the task map")
        _check_job(job, found)
    for task_id, task in tasks.items():
        if s._jobs.get(task.job.job_id) is not task.job:
            found.append(f"task {task_id} belongs to no known job (a forgotten job's leftover)")
    running = [job for job in s._jobs.values() if job.state is JobState.RUNNING]
    if len(s._order) != len(running) or {id(j) for j in s._order} != {id(j) for j in running}:
        listed = sorted(j.job_id for j in s._order)
        found.append(
            f"the job order {listed} is not the running jobs {sorted(j.job_id for j in running)}"
        )
    keys = [job.key for job in s._order]
    if keys != sorted(keys):
        found.append("the job order is not sorted by effective priority")


def _check_job(job: _Job, found: list[str]) -> None:
    name = f"job {job.job_id}"
    states = Counter(task.state for task in job.tasks)
    finished = states[TaskState.FINISHED]
    if job.remaining != len(job.tasks) - finished:
        found.append(
            f"{name}: remaining is {job.remaining}, "
            f"but {finished} of {len(job.tasks)} tasks finished"
        )
    if len(job.durations) != finished or job.durations != sorted(job.durations):
        found.append(
            f"{name}: {len(job.durations)} durations (sorted?) for {finished} finished tasks"
        )
    allowed = {
        JobState.RUNNING: {
            TaskState.PENDING,
            TaskState.WAITING,
            TaskState.ACTIVE,
            TaskState.FINISHED,
        },
        JobState.DONE: {TaskState.FINISHED},
        JobState.FAILED: {TaskState.FINISHED, TaskState.FAILED},
    }[job.state]
    wrong = sorted(str(state) for state in states if state not in allowed)
    if wrong:
        found.append(f"{name} is {job.state} but has tasks that are {', '.join(wrong)}")
    queued = Counter(task.spec.task_id for task in job.pending)
    for task in job.pending:
        if task.job is not job or task.state is not TaskState.PENDING:
            found.append(f"{name}'s queue holds task {task.spec.task_id}, which is {task.state}")
    for task in job.tasks:
        times = queued[task.spec.task_id]
        if task.state is TaskState.PENDING and times != 1:
            found.append(f"pending task {task.spec.task_id} is in its job's queue {times} times")


def _check_task(s: Scheduler, task: _Task, delayed: int, found: list[str]) -> None:
    name = f"task {task.spec.task_id}"
    numbers = [a.number for a in task.attempts]
    if numbers != list(range(1, len(numbers) + 1)):
        found.append(f"{name}: attempts are numbered {numbers}")
    live = {a.number: a for a in task.attempts if a.outcome is AttemptOutcome.LIVE}
    if task.live.keys() != live.keys() or any(task.live[n] is not a for n, a in live.items()):
        found.append(f"{name}: live map {sorted(task.live)} but live attempts {sorted(live)}")
    finished = sum(1 for a in task.attempts if a.outcome is AttemptOutcome.FINISHED)
    state = task.state
    if state is TaskState.ACTIVE:
        if not 1 <= len(task.live) <= 2 or (len(task.live) == 2 and not task.speculated):
            found.append(f"{name} is active with {len(task.live)} live attempts")
    elif task.live:
        found.append(f"{name} is {state} but has live attempts {sorted(task.live)}")
    if finished != (1 if state is TaskState.FINISHED else 0):
        found.append(f"{name} is {state} with {finished} finished attempts")
    if state is TaskState.WAITING and delayed != 1:
        found.append(f"{name} waits for a retry but has {delayed} delayed entries")
    if task.job.state is JobState.RUNNING and task.failures > task.spec.retries:
        found.append(
            f"{name} failed {task.failures} times (retries {task.spec.retries}) yet its job runs"
        )
    for attempt in live.values():
        worker = attempt.worker
        where = f"{name} attempt {attempt.number} is live on worker {worker.worker_id}"
        if s._workers.get(worker.worker_id) is not worker:
            found.append(f"{where}, which is unknown")
        elif attempt not in worker.running and attempt not in worker.queued:
            found.append(f"{where} but in neither its running nor its queued attempts")


def _check_worker(s: Scheduler, worker: _Worker, found: list[str]) -> None:
    name = f"worker {worker.worker_id}"
    running, queued = worker.running, worker.queued
    if len(running) > worker.slots:
        found.append(f"{name} runs {len(running)} attempts in {worker.slots} slots")
    if len(queued) > s.config.prefetch:
        found.append(f"{name} has {len(queued)} queued attempts, prefetch is {s.config.prefetch}")
    seen: set[int] = set()
    for attempt in [*running, *queued]:
        what = f"{name} holds {attempt.task.spec.task_id} attempt {attempt.number}"
        if id(attempt) in seen:
            found.append(f"{what} twice")
        seen.add(id(attempt))
        if attempt.worker is not worker or attempt.outcome is not AttemptOutcome.LIVE:
            found.append(f"{what}, which is {attempt.outcome} on {attempt.worker.worker_id}")
        if attempt.task.live.get(attempt.number) is not attempt:
            found.append(f"{what}, which its task does not count as live")
        if s._tasks.get(attempt.task.spec.task_id) is not attempt.task:
            found.append(f"{what}, whose task is unknown")
    names = set(worker.used) | {n for a in running for n in a.task.spec.resources}
    for resource in sorted(names):
        total = sum(a.task.spec.resources.get(resource, 0) for a in running)
        if abs(worker.used.get(resource, 0) - total) > _TOLERANCE:
            found.append(
                f"{name} counts {worker.used.get(resource, 0)} {resource} in use, "
                f"its running attempts take {total}"
            )
    if queued and len(running) < worker.slots and worker.fits_now(queued[0].task.spec.resources):
        found.append(
            f"{name} has a free slot and room, yet {queued[0].task.spec.task_id} stays queued"
        )


def _check_timers(s: Scheduler, delayed: Counter[str], found: list[str]) -> None:
    for task_id in delayed:
        task = s._tasks.get(task_id)
        if task is None:
            found.append(
                f"a delayed retry names unknown task {task_id} (a forgotten job's leftover)"
            )
        elif task.state not in (TaskState.WAITING, TaskState.FAILED):
            found.append(f"a delayed retry names task {task_id}, which is {task.state}")
    deadlines = {id(a): at for at, _, a in s._deadlines}
    for _, _, attempt in s._deadlines:
        if s._tasks.get(attempt.task.spec.task_id) is not attempt.task:
            found.append(
                f"a deadline names {attempt.task.spec.task_id}, "
                "an unknown task (a forgotten job's leftover)"
            )
    for task in s._tasks.values():
        timeout = task.spec.timeout
        for attempt in task.live.values():
            if timeout is None or attempt.started_at is None:
                continue
            at = deadlines.get(id(attempt))
            if at is None or abs(at - (attempt.started_at + timeout)) > _TOLERANCE:
                found.append(
                    f"{task.spec.task_id} attempt {attempt.number} runs with a timeout, "
                    f"but its deadline is {at}"
                )
    for attempt in s._stragglers:
        if s._tasks.get(attempt.task.spec.task_id) is not attempt.task:
            found.append(f"a straggler names {attempt.task.spec.task_id}, an unknown task")
