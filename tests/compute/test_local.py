"""The local executor end to end: real worker processes, real failures, bounded time."""

from __future__ import annotations

import asyncio
import multiprocessing
import operator
import os
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.compute import sum as sum_example
from examples.compute import wordcount
from shoal.compute import (
    ExecutorError,
    Job,
    JobError,
    JobFailed,
    LocalExecutor,
    known_executors,
    ranges,
)
from shoal.compute._serialize import dumps_function

from . import tasks


@pytest.fixture(autouse=True)
def no_workers_left_behind() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []


def test_sum_matches_a_plain_computation() -> None:
    outcome = sum_example.small_job.run(workers=2)
    assert outcome.result == sum(range(sum_example.SMALL_N))
    report = outcome.report
    assert report.state == "done" and len(report.tasks) == 4
    assert all(t.attempts == 1 and t.duration is not None for t in report.tasks)
    assert set(report.workers) <= {"local-1", "local-2"}
    assert report.to_dict()["tasks"][0]["task_id"] == report.tasks[0].task_id


def test_wordcount_matches_a_plain_computation(tmp_path: Path) -> None:
    wordcount.write_sample(tmp_path, files_count=6, words_per_file=300)
    outcome = wordcount.make_job(str(tmp_path)).run(workers=2)
    plain: Counter[str] = Counter()
    for path in sorted(tmp_path.glob("*.txt")):
        plain.update(wordcount.count_words(str(path)))
    assert outcome.result == plain


def test_many_short_tasks_and_order_without_combine() -> None:
    outcome = Job("squares", tasks.square, range(2000)).run(workers=2)
    assert outcome.result == [x * x for x in range(2000)]


def test_run_async() -> None:
    job = Job("sum", sum_example.partial_sum, ranges(0, 1000, 3), combine=operator.add)
    outcome = asyncio.run(job.run_async(workers=1))
    assert outcome.result == sum(range(1000))


def test_killing_a_worker_mid_job_still_gives_the_right_answer() -> None:
    killed: list[int] = []
    with LocalExecutor(2) as executor:

        def kill_one(job_id: str, done: int, total: int) -> None:
            if done >= 4 and not killed:
                pid = next(iter(executor.worker_pids().values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        job = Job("naps", tasks.nap, [0.02] * 24, combine=operator.add)
        outcome = executor.run(job, progress=kill_one)
        assert pid_is_gone(killed[0])
        assert killed[0] not in executor.worker_pids().values()
        assert len(executor.worker_pids()) == 2  # replaced
    assert outcome.result == pytest.approx(0.02 * 24)
    outcomes = [a.outcome for t in outcome.report.tasks for a in t.history]
    assert "lost" in outcomes


def pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_task_that_kills_its_own_worker_is_rerun(tmp_path: Path) -> None:
    job = Job("crashy", tasks.crash_once, [(i, str(tmp_path)) for i in range(8)])
    outcome = job.run(workers=2)
    assert outcome.result == [i * 2 for i in range(8)]
    assert outcome.report.tasks[3].attempts == 2


def test_a_raising_task_is_retried_then_the_job_fails_with_its_traceback() -> None:
    job = Job("bad", tasks.fail_always, [7], retries=2, backoff=0.01)
    with pytest.raises(JobFailed) as caught:
        job.run(workers=2)
    error = caught.value
    assert error.attempts == 3 and error.task_id.endswith("/0")
    assert "Traceback (most recent call last)" in error.traceback
    assert "in fail_always" in error.traceback
    assert "ValueError: bad partition 7" in error.traceback
    assert "ValueError: bad partition 7" in str(error)


def test_timeout_kills_the_task_and_counts_as_a_failure() -> None:
    job = Job("hang", tasks.nap, [30.0], retries=1, backoff=0.01, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"timed out after 0\.2s"):
        job.run(workers=1)
    assert time.monotonic() - started < 10


def test_a_combine_that_raises_fails_the_job() -> None:
    job = Job("c", tasks.square, range(4), combine=tasks.bad_combine)
    with pytest.raises(JobFailed, match="combine is broken"):
        job.run(workers=2)


def test_a_straggler_is_overtaken_by_its_speculative_copy(tmp_path: Path) -> None:
    parts = [(i, str(tmp_path), 5) for i in range(12)]
    started = time.monotonic()
    outcome = Job("stragglers", tasks.slow_once, parts).run(workers=2)
    assert outcome.result == list(range(12))
    assert time.monotonic() - started < 20  # the hung original (60 s) was not waited for
    slow = outcome.report.tasks[5]
    assert slow.won_by_speculative and slow.speculative_copies == 1
    assert [a.outcome for a in slow.history] == ["cancelled", "finished"]
    assert outcome.report.speculative_copies == 1


def test_high_priority_submitted_later_finishes_first() -> None:
    finished: dict[str, float] = {}

    def note(job_id: str, done: int, total: int) -> None:
        if done == total:
            finished.setdefault(job_id, time.monotonic())

    with LocalExecutor(2) as executor:
        low = executor.submit(Job("low", tasks.nap, [0.03] * 24, combine=operator.add))
        high = executor.submit(
            Job("high", tasks.nap, [0.03] * 4, combine=operator.add, priority=10)
        )
        results = executor.wait([low, high], progress=note)
    assert finished[high] < finished[low]
    assert results[0].result == pytest.approx(0.03 * 24)  # the low job still completes
    assert results[1].result == pytest.approx(0.03 * 4)


# --- a long-lived executor ----------------------------------------------------------------


def held(executor: LocalExecutor) -> tuple[int, ...]:
    """What the executor and its scheduler keep per job (and the functions workers hold)."""
    scheduler = executor._scheduler
    return (
        len(executor._runs),
        len(executor._by_no),
        len(executor._task_ref),
        len(scheduler._jobs),
        len(scheduler._tasks),
        sum(len(w.fns) for w in executor._workers.values()),
    )


def test_a_long_lived_executor_forgets_each_job_once_waited_for() -> None:
    with LocalExecutor(2) as executor:
        executor.run(Job("sum", tasks.square, range(20), combine=operator.add))
        after_first = held(executor)
        for n in range(1, 31):
            outcome = executor.run(Job("sum", tasks.square, range(n), combine=operator.add))
            assert outcome.result == sum(x * x for x in range(n))
        assert held(executor) == after_first == (0, 0, 0, 0, 0, 0)
        with pytest.raises(JobError, match="unknown job id"):
            executor.wait([outcome.report.job_id])


def test_a_late_result_of_a_forgotten_job_is_ignored() -> None:
    with LocalExecutor(1) as executor:
        first = executor.run(Job("first", tasks.square, range(4)))
        assert first.result == [0, 1, 4, 9] and held(executor) == (0, 0, 0, 0, 0, 0)
        # As if an attempt of the first job (job number 1) had been cancelled while queued
        # behind another job's: it is still on the worker, and its result comes back late.
        (worker,) = executor._workers.values()
        fn = dumps_function(tasks.square, "square")
        worker.conn.send_bytes(pickle.dumps(("run", [(1, fn)], [(1, 2, 9, 2)])))
        worker.fifo.append((1, 2, 9))
        worker.fns.add(1)
        second = executor.run(Job("second", tasks.square, range(100), combine=operator.add))
        assert second.result == sum(x * x for x in range(100))
        assert second.report.retries == 0 and not worker.fifo
        assert held(executor)[:5] == (0, 0, 0, 0, 0)


def test_jobs_with_cancelled_and_speculative_attempts_are_forgotten(tmp_path: Path) -> None:
    with LocalExecutor(2) as executor:
        low = executor.submit(Job("low", tasks.square, range(3000), combine=operator.add))
        failing = [(i, 1200) for i in range(3000)]
        high = executor.submit(Job("failing", tasks.fail_at, failing, retries=0, priority=5))
        with pytest.raises(JobFailed, match="bad partition 1200"):
            executor.wait([high])  # its queued attempts are cancelled; some sit behind low's
        assert executor.wait([low])[0].result == sum(x * x for x in range(3000))
        assert held(executor)[:5] == (0, 0, 0, 0, 0)
        squares = executor.run(Job("squares", tasks.square, range(3000)))
        assert squares.result == [x * x for x in range(3000)]
        assert squares.report.retries == 0
        parts = [(i, str(tmp_path), 5) for i in range(12)]
        stragglers = executor.run(Job("stragglers", tasks.slow_once, parts))
        assert stragglers.result == list(range(12))
        assert stragglers.report.tasks[5].won_by_speculative
        last = executor.run(Job("last", tasks.square, range(100), combine=operator.add))
        assert last.result == sum(x * x for x in range(100))
        assert held(executor) == (0, 0, 0, 0, 0, 0)


# --- bad input -----------------------------------------------------------------------------


def test_unpicklable_function_is_refused_up_front() -> None:
    lock = threading.Lock()

    def holds_a_lock(x: int) -> object:
        return lock

    with pytest.raises(JobError, match=r"map_fn 'test_unpicklable.*holds_a_lock'.*lock"):
        Job("locked", holds_a_lock, [1])
    with pytest.raises(JobError, match="combine"):
        Job("locked", tasks.square, [1], combine=lambda a, b: lock)


def test_bad_partitions_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match="parts must be > 0, got -2"):
        Job("neg", tasks.square, ranges(0, 10, -2))
    with pytest.raises(JobError, match="no partitions"):
        Job("empty", tasks.square, [])
    with pytest.raises(JobError, match="retries must be >= 0"):
        Job("r", tasks.square, [1], retries=-1)
    with pytest.raises(JobError, match="not a string"):
        Job("s", tasks.square, "abc")
    with pytest.raises(JobError, match="workers must be a positive int"):
        Job("w", tasks.square, [1]).run(workers=0)


def test_unknown_executor_lists_the_known_ones() -> None:
    job = Job("j", tasks.square, [1])
    known = ", ".join(known_executors())
    with pytest.raises(JobError, match=f"unknown executor 'spark'; known executors: {known}$"):
        job.run("spark")
    assert {"dask", "local", "shoal"} <= set(known_executors())
    assert list(known_executors()) == sorted(known_executors())


def test_resources_no_worker_offers_are_refused() -> None:
    job = Job("gpu", tasks.square, [1], resources={"cpu": 1, "gpu": 1})
    with pytest.raises(ExecutorError, match="which no worker offers"):
        job.run(workers=1)
    with LocalExecutor(2, resources=[{"cpu": 1}, {"cpu": 1, "gpu": 1}]) as executor:
        outcome = executor.run(job)
    assert outcome.report.tasks[0].worker_id == "local-2"
