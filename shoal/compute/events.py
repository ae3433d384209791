"""The scheduler's vocabulary: the events (stimuli) it handles and the instructions it returns.

Also the values those carry or expose: task specs, the scheduler's config, the typed
task, job and attempt states, and read-only views. All frozen, slotted dataclasses that
validate themselves on construction, so a malformed event fails where it is made, not
deep inside ``Scheduler.handle``. Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, TypeAlias

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
]


# --- states -------------------------------------------------------------------------------
# StrEnums: typed for mypy and compared by identity in the scheduler, yet equal to (and
# serialised as) their plain names, so reports and JSON read the same as before.


class TaskState(StrEnum):
    """Where a task is; every task is in exactly one (``Scheduler.validate`` checks)."""

    PENDING = "pending"  # ready to run: in its job's queue, no live attempt
    WAITING = "waiting"  # failed, waiting out its backoff (in the delayed heap)
    ACTIVE = "active"  # has one live attempt, or two (a speculative copy)
    FINISHED = "finished"  # one attempt finished; its result is the task's
    FAILED = "failed"  # its job failed (or was cancelled) before it finished


class JobState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # a task failed too often, or the job was cancelled


class AttemptOutcome(StrEnum):
    LIVE = "live"  # assigned to a worker (running or queued there), not yet over
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"  # lost a race, timed out, or its job failed
    LOST = "lost"  # its worker was lost


def _check_resources(resources: Mapping[str, float], what: str) -> None:
    for name, amount in resources.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what}: resource names must be non-empty strings, got {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise ValueError(f"{what}: resource {name!r} must be a number >= 0, got {amount!r}")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the scheduler needs to know about one task (not its data or function)."""

    task_id: str
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1})
    retries: int = 2
    backoff: float = 0.1
    timeout: float | None = None
    speculative: bool = True
    locality: str | None = None  # the id of a preferred worker, when the data lives there

    def __post_init__(self) -> None:
        if not self.task_id:
            raise ValueError("task_id must not be empty")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {self.timeout}")
        _check_resources(self.resources, f"task {self.task_id}")


# --- events (stimuli) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSubmitted:
    job_id: str
    tasks: tuple[TaskSpec, ...]
    priority: float = 0
    submitted_at: float = 0.0
    stimulus_id: str = ""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError(f"job {self.job_id!r} has no tasks")
        if len({t.task_id for t in self.tasks}) != len(self.tasks):
            raise ValueError(f"job {self.job_id!r} has duplicate task ids")


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    worker_id: str
    resources: Mapping[str, float]
    slots: int = 1
    stimulus_id: str = ""

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"worker {self.worker_id!r}: slots must be >= 1, got {self.slots}")
        _check_resources(self.resources, f"worker {self.worker_id}")


@dataclass(frozen=True, slots=True)
class WorkerLost:
    worker_id: str
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskStarted:
    task_id: str
    attempt: int
    worker_id: str
    now: float
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskFinished:
    task_id: str
    attempt: int
    worker_id: str
    now: float
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskFailed:
    task_id: str
    attempt: int
    worker_id: str
    error: str  # the traceback text, as the worker formatted it
    now: float
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    now: float
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class CancelJob:
    """Stop a job from outside (a user's cancel, a combiner that raised in the driver)."""

    job_id: str
    error: str
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ForgetJob:
    """Drop a finished (done or failed) job and its tasks: a long-lived executor's memory.

    Anything reported later about its tasks is stale and ignored.
    """

    job_id: str
    stimulus_id: str = ""


Event: TypeAlias = (
    JobSubmitted
    | WorkerJoined
    | WorkerLost
    | TaskStarted
    | TaskFinished
    | TaskFailed
    | Tick
    | CancelJob
    | ForgetJob
)


# --- instructions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunTask:
    task_id: str
    attempt: int
    worker_id: str
    speculative: bool = False


@dataclass(frozen=True, slots=True)
class CancelTask:
    """Stop an attempt: it lost a race, timed out, or its job failed. Its result is stale."""

    task_id: str
    attempt: int
    worker_id: str
    started: bool = False  # whether the worker is (as far as we know) running it right now
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobDone:
    job_id: str


@dataclass(frozen=True, slots=True)
class JobFailed:
    """The job is over: ``task_id`` failed too often (``error`` is its last traceback).

    ``task_id`` is empty when the job was cancelled (``CancelJob``).
    """

    job_id: str
    task_id: str
    error: str
    attempts: int = 0


Instruction: TypeAlias = RunTask | CancelTask | JobDone | JobFailed


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    aging: float = 0.1  # priority levels a waiting job gains per second
    straggler_factor: float = 3.0
    straggler_min_finished: int = 3
    straggler_min_runtime: float = 0.1  # seconds; never speculate on tasks shorter than this
    prefetch: int = 0  # queued attempts a worker may hold behind its slots
    prefetch_under: float = 0.005  # seconds of median task time below which prefetch applies
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.aging < 0 or self.straggler_factor < 1 or self.straggler_min_finished < 1:
            raise ValueError("aging must be >= 0, straggler_factor >= 1, min_finished >= 1")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")


# --- read-only views ----------------------------------------------------------------------


class StoryLine(NamedTuple):
    """One line of a task's story: what happened, caused by which stimulus."""

    stimulus_id: str
    what: str  # submitted | run | started | finished | failed | cancelled | lost | ... | ignored
    attempt: int
    worker_id: str
    now: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AttemptView:
    task_id: str
    attempt: int
    worker_id: str
    speculative: bool
    assigned_at: float
    started_at: float | None
    ended_at: float | None
    outcome: AttemptOutcome
    error: str = ""
