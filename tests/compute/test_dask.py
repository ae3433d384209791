"""The dask executor runs the same jobs unchanged (skipped when dask is not installed)."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from examples.compute import sum as sum_example
from examples.compute import wordcount
from shoal.compute import Job, JobError, JobFailed
from shoal.compute.dask_executor import DaskExecutor

from . import tasks


@pytest.fixture(scope="module")
def dask() -> Iterator[DaskExecutor]:
    # Threads in this process: the cluster starts in well under a second.
    with DaskExecutor(workers=2, processes=False) as executor:
        yield executor


def test_sum_matches_a_plain_computation(dask: DaskExecutor) -> None:
    seen: list[int] = []
    outcome = sum_example.small_job.run(dask, progress=lambda _, done, total: seen.append(done))
    assert outcome.result == sum(range(sum_example.SMALL_N))
    assert seen[-1] == 4 and outcome.report.executor == "dask"
    assert all(t.worker_id.startswith(("tcp://", "inproc://")) for t in outcome.report.tasks)


def test_wordcount_matches_a_plain_computation(dask: DaskExecutor, tmp_path: Path) -> None:
    wordcount.write_sample(tmp_path, files_count=5, words_per_file=200)
    plain: Counter[str] = Counter()
    for path in sorted(tmp_path.glob("*.txt")):
        plain.update(wordcount.count_words(str(path)))
    assert wordcount.make_job(str(tmp_path)).run(dask).result == plain


def test_order_is_kept_with_and_without_a_combiner(dask: DaskExecutor) -> None:
    assert Job("sq", tasks.square, range(7)).run(dask).result == [x * x for x in range(7)]
    letters = Job("cat", str, list("abcdefg"), combine=operator.add)  # not commutative
    assert letters.run(dask).result == "abcdefg"


def test_a_raising_task_fails_the_job_with_its_traceback(dask: DaskExecutor) -> None:
    with pytest.raises(JobFailed) as caught:
        Job("bad", tasks.fail_always, [3], retries=1).run(dask)
    assert "ValueError: bad partition 3" in caught.value.traceback
    assert "fail_always" in caught.value.traceback


def test_a_job_is_forgotten_once_waited_for(dask: DaskExecutor) -> None:
    job_id = dask.submit(Job("sq", tasks.square, range(3)))
    assert dask.wait([job_id])[0].result == [0, 1, 4]
    with pytest.raises(JobError, match="unknown job id"):
        dask.wait([job_id])
    assert job_id not in dask._runs


def test_by_name() -> None:
    outcome = sum_example.small_job.run("dask", workers=1, processes=False)
    assert outcome.result == sum(range(sum_example.SMALL_N))
