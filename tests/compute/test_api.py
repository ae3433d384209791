"""The public surface of shoal.compute is explicit and pinned."""

from __future__ import annotations

import pytest

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


def test_the_job_value_type_imports_no_executor() -> None:
    """``import shoal.compute.job`` loads no executor, nor Dask or Ray behind one: the
    registry (``executors``) imports an executor's module only when one is made."""
    import subprocess
    import sys

    code = (
        "import sys, shoal.compute.job, shoal.compute.executors\n"
        "heavy = ('shoal.compute.local', 'shoal.compute.shoal_executor',\n"
        "         'shoal.compute.dask_executor', 'shoal.compute.ray_executor',\n"
        "         'shoal.compute._driver', 'distributed', 'ray')\n"
        "print(sorted(m for m in sys.modules if m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_executors_are_resolved_by_name() -> None:
    from shoal.compute import JobError, LocalExecutor, known_executors
    from shoal.compute.executors import executor_by_name

    assert known_executors() == ("dask", "local", "ray", "shoal")
    made = executor_by_name("local", workers=1)
    try:
        assert isinstance(made, LocalExecutor)
    finally:
        made.close()
    with pytest.raises(JobError, match="unknown executor 'nope'; known executors: dask, local"):
        executor_by_name("nope")
