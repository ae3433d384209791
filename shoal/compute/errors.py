"""The one exception hierarchy of the job engine.

::

    ComputeError                 anything the job engine raises on purpose
    ├── JobError                 the job definition is wrong (also a ValueError): caught
    │                            before anything runs -- unpicklable function, no
    │                            partitions, unknown executor, bad option
    ├── JobFailed                the job ran and a task kept failing: carries the task id,
    │                            the number of attempts and the task's original traceback
    └── ExecutorError            the executor itself could not do its work (workers would
                                 not start, no worker can ever fit a task's resources)

Errors raised by user code inside a task never escape as themselves: they come back as
traceback text inside `JobFailed`, because they happened in another process.
"""

from __future__ import annotations

__all__ = ["ComputeError", "ExecutorError", "JobError", "JobFailed"]


class ComputeError(Exception):
    """Base of every error the job engine raises on purpose."""


class JobError(ComputeError, ValueError):
    """The job definition is invalid; nothing was run."""


class JobFailed(ComputeError):
    """A job stopped because one of its tasks failed more often than allowed.

    ``traceback`` is the text of the task's last failure, as the worker formatted it.
    """

    def __init__(self, job: str, task_id: str, attempts: int, traceback: str) -> None:
        self.job = job
        self.task_id = task_id
        self.attempts = attempts
        self.traceback = traceback
        where = f"task {task_id} failed after {attempts} attempt(s)" if task_id else "cancelled"
        super().__init__(f"job {job!r}: {where}:\n{traceback}")

    def __reduce__(self) -> tuple[type[JobFailed], tuple[str, str, int, str]]:
        return (type(self), (self.job, self.task_id, self.attempts, self.traceback))


class ExecutorError(ComputeError):
    """The executor could not run the job (not a fault of any one task)."""
