"""The public surface of shoal.compute is explicit and pinned."""

from __future__ import annotations

import shoal.compute
import shoal.compute.scheduler


def test_public_api_is_pinned() -> None:
    assert sorted(shoal.compute.__all__) == [
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
    for name in shoal.compute.__all__:
        assert hasattr(shoal.compute, name), name
    for name in shoal.compute.scheduler.__all__:
        assert hasattr(shoal.compute.scheduler, name), name


def test_exception_tree() -> None:
    from shoal.compute import ComputeError, ExecutorError, JobError, JobFailed

    assert issubclass(JobError, ComputeError) and issubclass(JobError, ValueError)
    assert issubclass(JobFailed, ComputeError) and issubclass(ExecutorError, ComputeError)
    error = JobFailed("j", "j-1/0", 3, "Traceback ...\nValueError: x")
    import pickle

    copy = pickle.loads(pickle.dumps(error))
    assert (copy.task_id, copy.attempts, copy.traceback) == ("j-1/0", 3, error.traceback)
