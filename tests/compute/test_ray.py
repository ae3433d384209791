"""The ray executor runs the same jobs unchanged (skipped when ray is not installed).

Ray starts once for the module (about 3 s on 2 cores): every test shares that instance,
and ``RayExecutor()`` / ``executor="ray"`` inside a test reuse its connection.
"""

from __future__ import annotations

import operator
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

import ray

from examples.compute import sum as sum_example
from examples.compute import wordcount
from shoal.compute import ExecutorError, Job, JobError, JobFailed, by_key, known_executors
from shoal.compute.ray_executor import RayExecutor
from shoal.compute.scheduler import SchedulerConfig

from . import tasks

WORDS = ("raft", "lease", "watch", "shoal", "fish", "log", "term", "commit") * 40


def fail_first_time(arg: tuple[int, str]) -> int:
    """Raises on the first attempt of partition 1 only."""
    index, folder = arg
    if index == 1 and tasks.first_time(Path(folder) / "flaky"):
        raise ConnectionError("flaky partition 1")
    return index


def fail_or_nap(x: int) -> int:
    """Partition 0 raises at once; the others sleep ``x`` seconds."""
    if x == 0:
        raise ValueError("partition 0 is bad")
    time.sleep(x)
    return x


def count(words: list[str]) -> Counter[str]:
    return Counter(words)


def merge(a: Counter[str], b: Counter[str]) -> Counter[str]:
    return a + b


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    # "local": always a fresh instance, even if `ray start` left a cluster on this machine.
    with RayExecutor(
        "local", num_cpus=2, include_dashboard=False, log_to_driver=False, resources={"shard": 2}
    ) as made:
        yield made
    assert not ray.is_initialized()  # it started ray, so closing it shut ray down


def test_sum_matches_a_plain_computation(executor: RayExecutor) -> None:
    seen: list[int] = []
    outcome = sum_example.small_job.run(executor, progress=lambda _, done, total: seen.append(done))
    assert outcome.result == sum(range(sum_example.SMALL_N))
    assert seen[-1] == 4 and outcome.report.executor == "ray"
    report = outcome.report
    assert report.state == "done" and report.retries == 0
    node = ray.get_runtime_context().get_node_id()[:12]
    for task in report.tasks:
        assert task.worker_id.startswith(f"{node}/") and task.attempts == 1
        assert task.started_at is not None and task.duration is not None
        assert task.started_at >= -0.1 and task.duration >= 0
    assert all(isinstance(pid, int) and pid > 0 for pid in report.workers.values())


def test_wordcount_and_by_key_match_a_plain_computation(
    executor: RayExecutor, tmp_path: Path
) -> None:
    wordcount.write_sample(tmp_path, files_count=5, words_per_file=200)
    plain: Counter[str] = Counter()
    for path in sorted(tmp_path.glob("*.txt")):
        plain.update(wordcount.count_words(str(path)))
    assert wordcount.make_job(str(tmp_path)).run(executor).result == plain
    keyed = Job("by-key", count, by_key(WORDS, lambda w: w, 5), combine=merge)
    assert keyed.run(executor).result == Counter(WORDS)


def test_order_is_kept_with_and_without_a_combiner(executor: RayExecutor) -> None:
    assert Job("sq", tasks.square, range(7)).run(executor).result == [x * x for x in range(7)]
    letters = Job("cat", str, list("abcdefg"), combine=operator.add)  # not commutative
    assert letters.run(executor).result == "abcdefg"


def test_the_same_job_runs_unchanged_on_every_executor(executor: RayExecutor) -> None:
    keyed = Job("by-key", count, by_key(WORDS, lambda w: w, 3), combine=merge)
    results = {
        name: (sum_example.small_job.run(name, **options).result, keyed.run(name, **options).result)
        for name, options in (
            ("local", {"workers": 2}),
            ("dask", {"workers": 2, "processes": False}),
            ("ray", {}),  # reuses the module's ray instance
        )
    }
    assert results["local"] == results["dask"] == results["ray"]
    assert results["ray"] == (sum(range(sum_example.SMALL_N)), Counter(WORDS))
    assert ray.is_initialized()  # a RayExecutor that did not start ray leaves it running
    assert "ray" in known_executors()


def test_a_failing_task_is_retried_after_a_backoff(executor: RayExecutor, tmp_path: Path) -> None:
    job = Job("flaky", fail_first_time, [(i, str(tmp_path)) for i in range(3)], backoff=0.3)
    outcome = job.run(executor)
    assert outcome.result == [0, 1, 2] and outcome.report.retries == 1
    task = outcome.report.tasks[1]
    first, second = task.history
    assert (first.outcome, second.outcome) == ("failed", "finished")
    assert "ConnectionError: flaky partition 1" in first.error
    assert first.ended_at is not None and second.started_at is not None
    assert second.started_at - first.ended_at >= 0.25  # the backoff, give or take clocks
    assert task.attempts == 2 and task.worker_id == second.worker_id


def test_the_schedulers_retry_policy_applies_on_ray(tmp_path: Path) -> None:
    """The backoff is the scheduler's: its max_backoff caps a job's 60 s backoff."""
    job = Job("capped", fail_first_time, [(i, str(tmp_path)) for i in range(3)], backoff=60)
    started = time.monotonic()
    with RayExecutor(config=SchedulerConfig(max_backoff=0.2)) as capped:  # the module's ray
        outcome = capped.run(job)
    assert time.monotonic() - started < 30  # not the 60 s backoff
    first, second = outcome.report.tasks[1].history
    assert first.outcome == "failed" and second.outcome == "finished"
    assert first.ended_at is not None and second.started_at is not None
    assert second.started_at - first.ended_at >= 0.15  # the capped backoff, give or take


def test_a_raising_task_fails_the_job_with_its_traceback(executor: RayExecutor) -> None:
    with pytest.raises(JobFailed) as caught:
        Job("bad", tasks.fail_always, [3], retries=1, backoff=0.01).run(executor)
    assert caught.value.attempts == 2 and caught.value.task_id.endswith("/0")
    assert "ValueError: bad partition 3" in caught.value.traceback
    assert "fail_always" in caught.value.traceback
    assert caught.value.traceback.startswith("Traceback (most recent call last):")


def test_a_raising_combiner_fails_the_job_with_its_traceback(executor: RayExecutor) -> None:
    with pytest.raises(JobFailed) as caught:
        Job("bc", tasks.square, range(5), combine=tasks.bad_combine).run(executor)
    assert caught.value.task_id == "combine"
    assert "RuntimeError: combine is broken" in caught.value.traceback


def test_an_attempt_that_overruns_its_timeout_is_killed_and_retried(
    executor: RayExecutor, tmp_path: Path
) -> None:
    job = Job("slow", tasks.slow_once, [(i, str(tmp_path), 2) for i in range(4)], timeout=1.0)
    started = time.monotonic()
    outcome = job.run(executor)
    assert outcome.result == [0, 1, 2, 3]
    assert time.monotonic() - started < 30  # not the 60 s the first attempt would sleep
    first, second = outcome.report.tasks[2].history
    # The scheduler's report, as on the other executors: the attempt was cancelled.
    assert first.outcome == "cancelled" and "timed out after 1.0s" in first.error
    assert first.worker_id.count("/") == 1  # it announced its start: its ray worker is known
    assert second.outcome == "finished"
    assert [t.attempts for t in outcome.report.tasks] == [1, 1, 2, 1]


def test_a_timed_job_with_a_combiner(executor: RayExecutor) -> None:
    job = Job("timed", sum_example.partial_sum, sum_example.small_job.partitions, timeout=30)
    assert job.run(executor).result == [
        sum(range(a, b)) for a, b in sum_example.small_job.partitions
    ]
    combined = Job(
        "timed-sum",
        sum_example.partial_sum,
        [(0, 10), (10, 20), (20, 30)],
        timeout=30,
        combine=operator.add,
    )
    assert combined.run(executor).result == sum(range(30))


def test_a_worker_that_dies_is_a_failed_attempt_and_retried(
    executor: RayExecutor, tmp_path: Path
) -> None:
    job = Job("crash", tasks.crash_once, [(i, str(tmp_path)) for i in range(5)], backoff=0.01)
    outcome = job.run(executor)
    assert outcome.result == [0, 2, 4, 6, 8]
    first, second = outcome.report.tasks[3].history
    assert first.outcome == "failed" and "ray could not run the task" in first.error
    assert second.outcome == "finished" and outcome.report.retries == 1


def test_a_failed_job_cancels_its_running_tasks(executor: RayExecutor) -> None:
    started = time.monotonic()
    with pytest.raises(JobFailed, match="partition 0 is bad"):
        Job("mixed", fail_or_nap, [0, 60], retries=0).run(executor)
    assert time.monotonic() - started < 30  # not the 60 s partition 1 sleeps
    assert Job("after", tasks.square, range(4)).run(executor).result == [0, 1, 4, 9]


def test_resources_map_to_ray_resources(executor: RayExecutor) -> None:
    needs = {"cpu": 1, "shard": 1, "memory": 10**6}  # "shard" is the fixture's custom label
    assert Job("shard", tasks.square, range(4), resources=needs).run(executor).result == [
        0,
        1,
        4,
        9,
    ]
    with pytest.raises(ExecutorError, match="which no live ray node offers"):
        Job("tpu", tasks.square, [1], resources={"cpu": 1, "tpu": 1}).run(executor)
    with pytest.raises(ExecutorError, match="which no live ray node offers"):
        Job("big", tasks.square, [1], resources={"cpu": 3}).run(executor)
    with pytest.raises(JobError, match="ray refuses its resources"):
        Job("upper", tasks.square, [1], resources={"CPU": 1}).run(executor)


def test_several_jobs_on_one_executor(executor: RayExecutor) -> None:
    low = executor.submit(Job("low", tasks.square, range(20)))
    high = executor.submit(Job("high", tasks.square, range(5), priority=5))
    first, second = executor.wait([low, high])
    assert first.result == [x * x for x in range(20)] and second.result == [0, 1, 4, 9, 16]
    with pytest.raises(JobError, match="unknown job id"):
        executor.wait(["nope"])
    with pytest.raises(JobError, match="unknown job id"):
        executor.wait([low])  # forgotten once its result was handed over
    assert low not in executor._runs and high not in executor._runs
    # The decisions were the pure scheduler's, and it forgot the jobs too.
    executor._scheduler.validate()
    assert executor._scheduler._jobs == {} and executor._live == {}


def test_the_driver_hands_ray_the_highest_priority_first() -> None:
    with RayExecutor(max_in_flight=1) as one_at_a_time:  # on the module's ray instance
        low = one_at_a_time.submit(Job("low", tasks.square, range(6)))
        high = one_at_a_time.submit(Job("high", tasks.square, [7], priority=5))
        done_low, done_high = one_at_a_time.wait([low, high])
    # low's first task was already out; high's went next, ahead of low's other five
    assert done_high.report.wall_time < done_low.report.wall_time
    assert done_high.report.tasks[0].started_at is not None
    assert done_low.result == [x * x for x in range(6)] and done_high.result == [49]
    assert ray.is_initialized()


def test_bad_options_get_clear_errors(executor: RayExecutor) -> None:
    with pytest.raises(JobError, match="num_cpus must be a positive int"):
        RayExecutor(num_cpus=0)
    with pytest.raises(JobError, match="workers must be a positive int"):
        RayExecutor(workers=-1)
    with pytest.raises(JobError, match="not both"):
        RayExecutor(workers=2, num_cpus=2)
    with pytest.raises(JobError, match="num_cpus sizes a local Ray instance"):
        RayExecutor("ray://127.0.0.1:1", num_cpus=2)
    with pytest.raises(ExecutorError, match="already initialized"):
        RayExecutor("auto")
    closed = RayExecutor()
    closed.close()
    with pytest.raises(ExecutorError, match="closed"):
        closed.submit(Job("j", tasks.square, [1]))
    assert ray.is_initialized()
