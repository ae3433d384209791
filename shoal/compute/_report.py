"""A finished job's ``JobReport``, built from the scheduler's attempts (shared by executors).

Reads the pure scheduler's views and the driver's timings; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from .job import AttemptReport, JobReport, TaskReport
from .scheduler import Scheduler

__all__ = ["RESTORED", "build_report"]

RESTORED = "checkpoint"  # the worker id of a task whose result came from a checkpoint


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
) -> JobReport:
    """Times in the report are seconds since ``submitted_at`` (all on the driver's clock)."""
    origin = submitted_at
    tasks = []
    for index, task_id in enumerate(task_ids):
        if index in restored:
            tasks.append(TaskReport(task_id, index, RESTORED, 0, 0, False, None, None))
            continue
        views = scheduler.attempts(task_id)
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
        winner = next((v for v in views if v.outcome == "finished"), None)
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
