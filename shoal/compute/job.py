"""A job: a map function over partitions, an optional associative combiner, and options.

``Job`` validates itself on construction (a bad definition is a ``JobError`` before
anything runs) and runs on an executor chosen by name or given as an object::

    job = Job("sum", partial_sum, ranges(0, 10**8, 64), combine=operator.add)
    result = job.run()                      # the local executor, os.cpu_count() workers
    result = await job.run_async(workers=4)
    result.result, result.report.wall_time

An executor is anything with ``submit(job) -> job id``, ``wait(job ids) -> results``
and ``close()`` (the ``Executor`` protocol); several jobs may be submitted to one
executor and compete by priority. The results and reports are plain frozen data.

This module is the value type: it imports no executor. Names such as ``"local"`` are
resolved by the registry in ``executors`` (imported by ``run`` when it is given a name),
which imports an executor's module only when that executor is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from ._serialize import dumps_data, dumps_function
from .errors import JobError
from .partition import Partitioner
from .scheduler import TaskSpec

__all__ = [
    "AttemptReport",
    "Executor",
    "Job",
    "JobReport",
    "JobResult",
    "Progress",
    "TaskReport",
]

Progress = Callable[[str, int, int], None]
"""Called by an executor as ``progress(job_id, tasks_done, tasks_total)``."""


@dataclass(frozen=True, slots=True)
class AttemptReport:
    attempt: int
    worker_id: str
    speculative: bool
    outcome: str  # finished | failed | cancelled | lost
    started_at: float | None  # seconds since the job was submitted
    ended_at: float | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class TaskReport:
    task_id: str
    index: int  # the partition
    worker_id: str  # the worker whose result was used ("" if the task never finished)
    attempts: int
    speculative_copies: int
    won_by_speculative: bool
    started_at: float | None  # seconds since the job was submitted, as the worker measured
    duration: float | None  # seconds the winning attempt ran, as the worker measured
    history: tuple[AttemptReport, ...] = ()


@dataclass(frozen=True, slots=True)
class JobReport:
    job_id: str
    name: str
    executor: str
    state: str  # done | failed
    wall_time: float  # submission to completion, seconds
    tasks: tuple[TaskReport, ...]
    workers: Mapping[str, int | None] = field(default_factory=dict)  # worker id -> pid

    @property
    def retries(self) -> int:
        """Attempts beyond the first, speculative copies included."""
        return sum(t.attempts - 1 for t in self.tasks)

    @property
    def speculative_copies(self) -> int:
        return sum(t.speculative_copies for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "executor": self.executor,
            "state": self.state,
            "wall_time": self.wall_time,
            "retries": self.retries,
            "speculative_copies": self.speculative_copies,
            "workers": dict(self.workers),
            "tasks": [
                {
                    "task_id": t.task_id,
                    "index": t.index,
                    "worker_id": t.worker_id,
                    "attempts": t.attempts,
                    "speculative_copies": t.speculative_copies,
                    "won_by_speculative": t.won_by_speculative,
                    "started_at": t.started_at,
                    "duration": t.duration,
                    "history": [
                        {
                            "attempt": a.attempt,
                            "worker_id": a.worker_id,
                            "speculative": a.speculative,
                            "outcome": a.outcome,
                            "started_at": a.started_at,
                            "ended_at": a.ended_at,
                            "error": a.error,
                        }
                        for a in t.history
                    ],
                }
                for t in self.tasks
            ],
        }


@dataclass(frozen=True, slots=True)
class JobResult:
    result: Any
    report: JobReport


class Executor(Protocol):
    """Runs jobs. Driven by the caller's thread; not safe to share between threads.

    ``submit`` hands a job over and returns its id at once (tasks may start running);
    ``wait`` drives execution until every given job has ended and returns their results
    in the same order, raising the ``JobFailed`` of the first given job that failed;
    ``close`` stops every worker the executor started (idempotent).

    An executor forgets a job once ``wait`` has returned its result or raised its error
    (when it raises, the given jobs after the failed one are kept), so a long-lived
    executor does not grow with the jobs it has run: keep the ``JobResult``; a second
    ``wait`` on a forgotten job id raises ``JobError`` ("unknown job id").
    """

    name: str

    def submit(self, job: Job) -> str: ...

    def wait(
        self, job_ids: Sequence[str], *, progress: Progress | None = None
    ) -> list[JobResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Job:
    """A map function over partitions plus an optional associative ``combine``.

    ``partitions`` is a sequence (one task per item) or a ``Partitioner`` resolved when
    the job is submitted. Without ``combine`` the result is the list of per-partition
    results in partition order; with it, their in-order combination (``combine`` must be
    associative; it need not be commutative). ``locality`` optionally names, per
    partition, the worker id that should run it when that worker has room.
    """

    name: str
    map_fn: Callable[[Any], Any]
    partitions: Sequence[Any] | Partitioner[Any]
    combine: Callable[[Any, Any], Any] | None = None
    _: KW_ONLY
    priority: float = 0
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1})
    retries: int = 2
    backoff: float = 0.1
    timeout: float | None = None
    speculative: bool = True
    locality: Sequence[str | None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise JobError("a job needs a non-empty name")
        dumps_function(self.map_fn, f"job {self.name!r}: map_fn")
        if self.combine is not None:
            dumps_function(self.combine, f"job {self.name!r}: combine")
        parts = self.partitions
        if isinstance(parts, str | bytes):
            raise JobError(f"job {self.name!r}: partitions must be a sequence, not a string")
        if not isinstance(parts, Partitioner):
            if not isinstance(parts, Sequence):
                try:
                    parts = tuple(parts)
                except TypeError:
                    raise JobError(
                        f"job {self.name!r}: partitions must be a sequence or a Partitioner, "
                        f"got {type(parts).__name__}"
                    ) from None
                object.__setattr__(self, "partitions", parts)
            self._check_partitions(parts)
        for name, value in (("retries", self.retries), ("priority", self.priority)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise JobError(f"job {self.name!r}: {name} must be a number, got {value!r}")
        try:
            TaskSpec(
                "probe",
                dict(self.resources),
                self.retries,
                self.backoff,
                self.timeout,
                self.speculative,
            )
        except (ValueError, TypeError) as error:
            raise JobError(f"job {self.name!r}: {error}") from None

    def _check_partitions(self, parts: Sequence[Any]) -> None:
        if len(parts) == 0:
            raise JobError(f"job {self.name!r} has no partitions (need at least one)")
        if self.locality is not None and len(self.locality) != len(parts):
            raise JobError(
                f"job {self.name!r}: locality has {len(self.locality)} entries "
                f"for {len(parts)} partitions"
            )

    def resolve(self) -> list[Any]:
        """The partitions as a list (calling the ``Partitioner`` if one was given)."""
        parts = self.partitions
        if isinstance(parts, Partitioner) and not isinstance(parts, Sequence):
            try:
                parts = parts.split()
            except Exception as error:
                raise JobError(
                    f"job {self.name!r}: the partitioner failed: {type(error).__name__}: {error}"
                ) from error
        out = list(parts)
        self._check_partitions(out)
        try:
            dumps_data(out)
        except Exception as error:
            raise JobError(
                f"job {self.name!r}: partitions cannot be sent to workers: "
                f"{type(error).__name__}: {error}"
            ) from error
        return out

    def task_specs(self, job_id: str, count: int) -> tuple[TaskSpec, ...]:
        """One ``TaskSpec`` per partition; task ids are ``{job_id}/{index}``."""
        resources = dict(self.resources)
        locality = self.locality
        return tuple(
            TaskSpec(
                f"{job_id}/{i}",
                resources,
                self.retries,
                self.backoff,
                self.timeout,
                self.speculative,
                None if locality is None else locality[i],
            )
            for i in range(count)
        )

    def run(
        self,
        executor: str | Executor = "local",
        *,
        progress: Progress | None = None,
        **options: Any,
    ) -> JobResult:
        """Run the job and return its result and report; raise ``JobFailed`` if it fails.

        ``executor`` is a name (``options`` go to its constructor and the executor is
        closed afterwards) or an ``Executor`` object, which is left open.
        """
        if isinstance(executor, str):
            from .executors import executor_by_name  # here: the registry imports this module

            made = executor_by_name(executor, **options)
            try:
                return made.wait([made.submit(self)], progress=progress)[0]
            finally:
                made.close()
        if options:
            raise JobError(
                f"options {sorted(options)} apply only when the executor is given by name"
            )
        return executor.wait([executor.submit(self)], progress=progress)[0]

    async def run_async(
        self,
        executor: str | Executor = "local",
        *,
        progress: Progress | None = None,
        **options: Any,
    ) -> JobResult:
        """``run`` without blocking the event loop (the driver runs in a thread)."""
        return await asyncio.to_thread(self.run, executor, progress=progress, **options)
