"""What executors hand back: a finished job's ``JobReport`` (built from the scheduler's
attempts), ``wait``'s answer, progress calls. Shared by the executors.

Reads the pure scheduler's views and the driver's timings; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from .errors import JobFailed
from .job import AttemptReport, JobReport, JobResult, Progress, TaskReport
from .scheduler import AttemptOutcome, Scheduler

__all__ = ["RESTORED", "build_report", "hand_over", "report_progress"]

RESTORED = "checkpoint"  # the worker id of a task whose result came from a checkpoint


class _Ended(Protocol):
    """What ``hand_over`` reads of an executor's run of a job."""

    @property
    def error(self) -> JobFailed | None: ...


class _Progressing(Protocol):
    """What ``report_progress`` reads of an executor's run of a job."""

    @property
    def done(self) -> int: ...

    @property
    def partitions(self) -> Sequence[Any]: ...


R = TypeVar("R", bound=_Ended)


def hand_over(
    runs: Sequence[R],
    result: Callable[[R], JobResult],
    forget: Callable[[Sequence[R]], None],
) -> list[JobResult]:
    """``wait``'s answer for ended runs: their results in order, or the first failed one's
    error raised. The runs handed over (all of them, or those up to the failed one) are
    then forgotten, so a long-lived executor does not keep every job it ran."""
    results = []
    for position, run in enumerate(runs):
        if run.error is not None:
            forget(runs[: position + 1])
            raise run.error
        results.append(result(run))
    forget(runs)
    return results


def report_progress(
    progress: Progress | None, touched: Collection[str], runs: Mapping[str, _Progressing]
) -> None:
    """Call ``progress(job_id, done, total)`` for the jobs in ``touched``, in id order."""
    if progress is None:
        return
    for job_id in sorted(touched):
        run = runs[job_id]
        progress(job_id, run.done, len(run.partitions))


def build_report(
    scheduler: Scheduler,
    *,
    executor: str,
    job_id: str,
    name: str,
    state: str,
    task_ids: Sequence[str],
    timing: Mapping[int, tuple[str, float, float]],  # index -> (worker, start, end)
    submitted_at: float,
    finished_at: float,
    pids: Mapping[str, int | None],
    restored: Collection[int] = (),
    ran_on: Mapping[tuple[int, int], str] | None = None,
) -> JobReport:
    """Times in the report are seconds since ``submitted_at`` (all on the driver's clock).

    ``ran_on`` maps ``(index, attempt)`` to the worker that really ran an attempt, for an
    executor whose scheduler worker stands for a whole pool (ray); attempts missing from
    it are reported on their scheduler worker.
    """
    origin = submitted_at
    tasks = []
    for index, task_id in enumerate(task_ids):
        if index in restored:
            tasks.append(TaskReport(task_id, index, RESTORED, 0, 0, False, None, None))
            continue
        views = scheduler.attempts(task_id)
        if ran_on:
            views = tuple(
                replace(v, worker_id=ran_on.get((index, v.attempt), v.worker_id)) for v in views
            )
        history = tuple(
            AttemptReport(
                attempt=v.attempt,
                worker_id=v.worker_id,
                speculative=v.speculative,
                outcome=v.outcome,
                started_at=None if v.started_at is None else v.started_at - origin,
                ended_at=None if v.ended_at is None else v.ended_at - origin,
                error=v.error,
            )
            for v in views
        )
        winner = next((v for v in views if v.outcome is AttemptOutcome.FINISHED), None)
        times = timing.get(index)
        tasks.append(
            TaskReport(
                task_id=task_id,
                index=index,
                worker_id=winner.worker_id if winner else "",
                attempts=len(views),
                speculative_copies=sum(1 for v in views if v.speculative),
                won_by_speculative=bool(winner and winner.speculative),
                started_at=None if times is None else times[1] - origin,
                duration=None if times is None else times[2] - times[1],
                history=history,
            )
        )
    return JobReport(
        job_id=job_id,
        name=name,
        executor=executor,
        state=state,
        wall_time=finished_at - origin,
        tasks=tuple(tasks),
        workers={
            t.worker_id: pids.get(t.worker_id)
            for t in tasks
            if t.worker_id and t.worker_id != RESTORED
        },
    )
