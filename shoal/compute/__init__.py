"""shoal.compute: distributed jobs -- decompose, partition, schedule, run, aggregate.

A ``Job`` is a map function over partitions with an optional associative combiner; it
runs on an executor (``local``, worker processes on this machine, is the default) driven
by the pure scheduler in ``shoal.compute.scheduler``::

    from shoal.compute import Job, ranges
    job = Job("sum", lambda r: sum(range(*r)), ranges(0, 10**6, 4), combine=operator.add)
    job.run().result

Modules: ``partition`` (ranges, chunks, by_key, Partitioner), ``sources`` (files),
``job`` (Job, reports, the Executor protocol; it imports no executor), ``executors``
(the registry of executor names), ``scheduler`` (pure decisions) and ``events`` (its
events and instructions),
``aggregate`` (tree and streaming combination), ``local`` (the local executor),
``dask_executor`` (the same jobs on dask.distributed; needs the ``compute`` extra and is
imported only when asked for, as ``executor="dask"``), ``shoal_executor`` (the same jobs
on ``shoal worker`` processes found through the registry, ``executor="shoal"``; imported
only when asked for), ``ray_executor`` (the same jobs on a Ray cluster, ``executor="ray"``;
needs the ``compute`` extra and is imported only when asked for), ``worker`` (the
``shoal worker`` process), ``records`` (job records and checkpoints in the control
plane), ``errors`` (the exception tree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .aggregate import RunMerger, tree_reduce
from .errors import ComputeError, ExecutorError, JobError, JobFailed
from .executors import known_executors
from .job import AttemptReport, Executor, Job, JobReport, JobResult, Progress, TaskReport
from .partition import Partitioner, by_key, chunks, key_partition, ranges
from .sources import files

if TYPE_CHECKING:
    from .local import LocalExecutor

__all__ = [
    "AttemptReport",
    "ComputeError",
    "Executor",
    "ExecutorError",
    "Job",
    "JobError",
    "JobFailed",
    "JobReport",
    "JobResult",
    "LocalExecutor",
    "Partitioner",
    "Progress",
    "RunMerger",
    "TaskReport",
    "by_key",
    "chunks",
    "files",
    "key_partition",
    "known_executors",
    "ranges",
    "tree_reduce",
]


def __getattr__(name: str) -> Any:
    # LocalExecutor is imported on first use, so ``import shoal.compute.job`` (which runs
    # this module first) does not import an executor and its process machinery.
    if name == "LocalExecutor":
        from .local import LocalExecutor

        return LocalExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
