"""The ``shoal`` executor against real processes: a ``shoal server`` and ``shoal worker``s.

Every process is started on loopback, tracked by PID and killed at the end, even when a
test fails half-way. Waits poll with deadlines (generous ones: the machine is shared).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import operator
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.compute.sum import partial_sum
from shoal.cli.main import main
from shoal.client import ControlPlane
from shoal.compute import ExecutorError, Job, JobError, JobFailed, ranges
from shoal.compute._frames import RUN, frame
from shoal.compute._serialize import dumps_function
from shoal.compute.records import load_checkpoints, read_job
from shoal.compute.shoal_executor import ShoalExecutor
from shoal.testing import ServerProcess, wait_for

from . import tasks

REPO = Path(__file__).resolve().parents[2]
STARTUP = 90.0  # seconds a worker may take to register on a busy machine


class Workers:
    """``shoal worker`` subprocesses, killed by PID on exit."""

    def __init__(self, server: ServerProcess, logs: Path) -> None:
        self.server = server
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker_id: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{worker_id}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal.cli.main", "worker", "--server", self.server.url,
             "--id", worker_id, *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        )  # fmt: skip
        log.close()
        self.procs[worker_id] = proc
        return proc

    def registered(self) -> set[str]:
        url = f"{self.server.url}/api/v1/services/shoal-workers/instances"
        response = httpx.get(url, timeout=5)
        if response.status_code == 404:
            return set()
        return {i["id"] for i in response.json().get("instances", [])}

    def wait_registered(self, *ids: str) -> None:
        wait_for(lambda: set(ids) <= self.registered(), STARTUP, 0.1, f"workers {ids} registered")

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def control_plane(root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess("n1", root / "n1" / "data").start()
    try:
        server.wait_ready(60)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Workers]]:
    """One control plane and two one-slot workers, shared by the tests that kill nothing."""
    root = tmp_path_factory.mktemp("shoal-cluster")
    with control_plane(root) as server:
        workers = Workers(server, root)
        try:
            workers.start("w1")
            workers.start("w2")
            workers.wait_registered("w1", "w2")
            yield server, workers
        finally:
            workers.stop()


def executor(server: ServerProcess, **options: object) -> ShoalExecutor:
    return ShoalExecutor(server.url, min_workers=2, wait_for_workers=STARTUP, **options)  # type: ignore[arg-type]


# --- results -----------------------------------------------------------------------------------


def test_sum_matches_the_plain_computation_and_the_local_executor(
    cluster: tuple[ServerProcess, Workers],
) -> None:
    server, _ = cluster
    n = 2 * 10**6
    job = Job("sum", partial_sum, ranges(0, n, 16), combine=operator.add)
    with executor(server) as ex:
        assert set(ex.workers()) == {"w1", "w2"}
        outcome = job.run(ex)
        listed = Job("squares", tasks.square, list(range(50))).run(ex)
    assert outcome.result == sum(range(n)) == job.run(workers=2).result
    assert listed.result == [x * x for x in range(50)]
    report = outcome.report
    assert report.executor == "shoal" and report.state == "done" and len(report.tasks) == 16
    assert set(report.workers) <= {"w1", "w2"}


@pytest.mark.parametrize("name", ["local", "shoal", "dask"])
def test_every_executor_gives_the_plain_result(
    name: str, cluster: tuple[ServerProcess, Workers]
) -> None:
    if name == "dask" and importlib.util.find_spec("distributed") is None:
        pytest.skip("dask.distributed is not installed")
    server, _ = cluster
    options: dict[str, Any] = {"workers": 2}
    if name == "shoal":
        options = {"server": server.url, "min_workers": 2, "wait_for_workers": STARTUP}
    words = ["a b", "b c c", "", "a"] * 5
    job = Job("count", tasks.count_words, words, combine=tasks.merge_counts)
    assert job.run(name, **options).result == Counter(" ".join(words).split())


def test_a_failing_task_is_retried_then_fails_with_its_traceback(
    cluster: tuple[ServerProcess, Workers],
) -> None:
    server, _ = cluster
    job = Job("bad", tasks.fail_always, [7], retries=1, backoff=0.01)
    with executor(server) as ex, pytest.raises(JobFailed) as caught:
        job.run(ex)
    assert caught.value.attempts == 2
    assert "ValueError: bad partition 7" in caught.value.traceback
    assert "fail_always" in caught.value.traceback


def test_a_job_no_worker_can_fit_is_refused_before_it_runs(
    cluster: tuple[ServerProcess, Workers],
) -> None:
    server, _ = cluster
    job = Job("gpu", tasks.square, [1, 2], resources={"gpu": 1})
    with (
        executor(server) as ex,
        pytest.raises(ExecutorError, match=r"needs resources \{'gpu': 1\}.*no shoal worker offers"),
    ):
        job.run(ex)


def test_a_task_that_kills_its_slot_process_is_retried_on_a_fresh_one(
    cluster: tuple[ServerProcess, Workers], tmp_path: Path
) -> None:
    server, _ = cluster
    job = Job("crash", tasks.crash_once, [(i, str(tmp_path)) for i in range(8)], backoff=0.01)
    with executor(server) as ex:
        outcome = job.run(ex)
    assert outcome.result == [i * 2 for i in range(8)]
    crashed = outcome.report.tasks[3]
    assert crashed.attempts == 2
    first = crashed.history[0]
    assert first.outcome == "failed" and "slot process" in first.error
    assert "exited with code -9" in first.error


# --- a long-lived executor ----------------------------------------------------------------------


def held(ex: ShoalExecutor) -> tuple[int, ...]:
    """What the executor and its scheduler keep per job (and the functions slots hold)."""
    scheduler = ex._scheduler
    slots = [s for c in ex._conns.values() for s in c.slots if s is not None]
    return (
        len(ex._runs),
        len(ex._by_no),
        len(ex._task_ref),
        len(ex._dirty),
        len(scheduler._jobs),
        len(scheduler._tasks),
        sum(len(s.fns) for s in slots),
    )


def test_a_long_lived_executor_forgets_each_job_once_waited_for(
    cluster: tuple[ServerProcess, Workers],
) -> None:
    server, _ = cluster
    with executor(server) as ex:
        ex.run(Job("sum", tasks.square, range(20), combine=operator.add))
        after_first = held(ex)
        for n in range(1, 31):
            outcome = ex.run(Job("sum", tasks.square, range(n), combine=operator.add))
            assert outcome.result == sum(x * x for x in range(n))
        assert held(ex) == after_first == (0, 0, 0, 0, 0, 0, 0)
        with pytest.raises(JobError, match="unknown job id"):
            ex.wait([outcome.report.job_id])
        recorder = ex._recorder
        assert recorder is not None
        wait_for(lambda: not recorder._seq, 10, 0.05, "the recorder to forget the jobs")


def test_a_late_result_of_a_forgotten_job_is_ignored(
    cluster: tuple[ServerProcess, Workers],
) -> None:
    server, _ = cluster
    with executor(server) as ex:
        first = ex.run(Job("first", tasks.square, range(4)))
        assert first.result == [0, 1, 4, 9] and held(ex) == (0, 0, 0, 0, 0, 0, 0)
        # As if an attempt of the first job (job number 1) had been cancelled while queued
        # behind another job's: it is still on a slot, and its result comes back late.
        conn = next(iter(ex._conns.values()))
        slot = next(s for s in conn.slots if s is not None)
        fn = dumps_function(tasks.square, "square")
        message = pickle.dumps(("run", [(1, fn)], [(1, 2, 9, 2)]))
        conn.control.append(frame(RUN, slot.index, slot.gen, message))
        slot.fifo.append((1, 2, 9))
        slot.fns.add(1)
        second = ex.run(Job("second", tasks.square, range(100), combine=operator.add))
        assert second.result == sum(x * x for x in range(100))
        assert second.report.retries == 0 and not slot.fifo
        assert held(ex)[:6] == (0, 0, 0, 0, 0, 0)


def test_jobs_with_cancelled_and_speculative_attempts_are_forgotten(
    cluster: tuple[ServerProcess, Workers], tmp_path: Path
) -> None:
    server, _ = cluster
    with executor(server) as ex:
        low = ex.submit(Job("low", tasks.square, range(3000), combine=operator.add))
        failing = [(i, 1200) for i in range(3000)]
        high = ex.submit(Job("failing", tasks.fail_at, failing, retries=0, priority=5))
        with pytest.raises(JobFailed, match="bad partition 1200"):
            ex.wait([high])  # its queued attempts are cancelled; some sit behind low's
        assert ex.wait([low])[0].result == sum(x * x for x in range(3000))
        parts = [(i, str(tmp_path), 5) for i in range(12)]
        stragglers = ex.run(Job("stragglers", tasks.slow_once, parts))
        assert stragglers.result == list(range(12))
        assert stragglers.report.tasks[5].won_by_speculative
        last = ex.run(Job("last", tasks.square, range(100), combine=operator.add))
        assert last.result == sum(x * x for x in range(100))
        assert held(ex) == (0, 0, 0, 0, 0, 0, 0)


# --- records and the CLI -----------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_jobs_are_recorded_and_shown_by_the_cli(
    cluster: tuple[ServerProcess, Workers], capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = cluster
    code, out, err = cli(
        capsys, "job", "run", "examples.compute.sum:small_job", "--executor", "shoal",
        "--server", server.url, "--json",
    )  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    job_id = document["report"]["job_id"]
    assert document["result"] == sum(range(10**6))
    assert document["report"]["executor"] == "shoal"

    code, out, err = cli(capsys, "jobs", "--endpoints", server.url, "--json")
    assert code == 0, err
    listed = {j["id"]: j for j in json.loads(out)["jobs"]}
    assert listed[job_id]["state"] == "done"
    assert listed[job_id]["counts"]["done"] == listed[job_id]["tasks"] == 4

    code, out, err = cli(capsys, "job", "show", job_id, "--endpoints", server.url, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["name"] == "sum-small" and shown["state"] == "done"
    assert shown["driver"]["pid"] == os.getpid()
    code, out, _ = cli(capsys, "jobs", "--endpoints", server.url)
    assert code == 0 and job_id in out and "4/4" in out
    code, out, _ = cli(capsys, "job", "show", job_id, "--endpoints", server.url)
    assert code == 0 and "done" in out
    with ControlPlane(server.url) as plane:  # a finished job's checkpoints are forgotten
        assert load_checkpoints(plane, job_id) == ({}, set())

    code, _, err = cli(capsys, "job", "show", "nope-123", "--endpoints", server.url)
    assert code == 1 and "no job 'nope-123' is recorded" in err


def start_driver(
    server: ServerProcess, marks: Path, *extra: str, nap: float = 0.15
) -> subprocess.Popen[str]:
    env = {**os.environ, "SHOAL_TEST_MARKS": str(marks), "SHOAL_TEST_NAP": str(nap)}
    return subprocess.Popen(
        [sys.executable, "-m", "shoal.cli.main", "job", "run", "tests.compute.tasks:marked_job",
         "--executor", "shoal", "--server", server.url, "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip


def running_job(server: ServerProcess, name: str, seen: set[str]) -> dict[str, object] | None:
    with ControlPlane(server.url) as plane:
        for kv in plane.iter_keys("/compute/jobs/"):
            record = json.loads(kv.value)
            if record["name"] == name and record["id"] not in seen:
                return record  # type: ignore[no-any-return]
    return None


def known_jobs(server: ServerProcess) -> set[str]:
    with ControlPlane(server.url) as plane:
        return {json.loads(kv.value)["id"] for kv in plane.iter_keys("/compute/jobs/")}


def test_cancel_stops_a_running_job_and_records_it(
    cluster: tuple[ServerProcess, Workers], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = cluster
    before = known_jobs(server)
    driver = start_driver(server, tmp_path, nap=0.5)
    try:
        record = wait_for(
            lambda: running_job(server, "marked", before), STARTUP, 0.05, "the job's record"
        )
        job_id = str(record["id"])
        wait_for(lambda: (tmp_path / "runs").exists(), 30, 0.05, "a task to start")
        code, out, err = cli(capsys, "job", "cancel", job_id, "--endpoints", server.url)
        assert code == 0, err
        assert f"job {job_id} cancelled" in out
        _, driver_err = driver.communicate(timeout=30)
        assert driver.returncode == 1
        assert "cancelled" in driver_err
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
            driver.communicate(timeout=10)
    with ControlPlane(server.url) as plane:
        final = read_job(plane, job_id)
    assert final is not None and final["state"] == "cancelled"
    assert final["driver_alive"] is False
    assert final["counts"]["done"] < 24  # it really stopped early
    code, _, err = cli(capsys, "job", "cancel", job_id, "--endpoints", server.url)
    assert code == 1 and "already ended: cancelled" in err


def test_resume_after_the_driver_is_killed_reruns_no_finished_task(
    cluster: tuple[ServerProcess, Workers], tmp_path: Path
) -> None:
    server, _ = cluster
    before = known_jobs(server)
    first = start_driver(server, tmp_path)
    try:
        record = wait_for(
            lambda: running_job(server, "marked", before), STARTUP, 0.05, "the job's record"
        )
        job_id = str(record["id"])

        def some_done() -> bool:
            with ControlPlane(server.url) as plane:
                found = read_job(plane, job_id)
            return found is not None and found["counts"]["done"] >= 6

        wait_for(some_done, 60, 0.02, "6 finished tasks recorded")
        with ControlPlane(server.url) as plane:
            assert read_job(plane, job_id)["driver_alive"] is True  # type: ignore[index]
        os.kill(first.pid, signal.SIGKILL)  # no chance to record anything more
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
    with ControlPlane(server.url) as plane:
        checkpointed, _ = load_checkpoints(plane, job_id)
        assert read_job(plane, job_id)["state"] == "running"  # type: ignore[index]
    assert len(checkpointed) >= 6
    assert all(checkpointed[i] == i for i in checkpointed)

    second = start_driver(server, tmp_path, "--resume", job_id)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    document = json.loads(out)
    assert document["result"] == sum(range(24))
    assert document["report"]["job_id"] == job_id
    restored = [t for t in document["report"]["tasks"] if t["worker_id"] == "checkpoint"]
    assert {t["index"] for t in restored} == set(checkpointed)
    runs = Counter(int(line) for line in (tmp_path / "runs").read_text().split())
    assert set(runs) == set(range(24))
    assert all(runs[i] == 1 for i in checkpointed), runs  # never rerun
    with ControlPlane(server.url) as plane:
        assert read_job(plane, job_id)["state"] == "done"  # type: ignore[index]


def test_a_worker_stopped_with_sigterm_deregisters_and_exits_cleanly(
    cluster: tuple[ServerProcess, Workers],
) -> None:
    _, workers = cluster
    proc = workers.start("w3", "--slots", "2", "--resources", "cpu=2,gpu=1")
    workers.wait_registered("w3")
    url = f"{workers.server.url}/api/v1/services/shoal-workers/instances"
    listed = {i["id"]: i for i in httpx.get(url, timeout=5).json()["instances"]}
    assert listed["w3"]["metadata"]["slots"] == "2"
    assert json.loads(listed["w3"]["metadata"]["resources"]) == {"cpu": 2.0, "gpu": 1.0}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "w3" not in workers.registered()


# --- faults ------------------------------------------------------------------------------------


def test_a_worker_sigkilled_mid_job_is_replaced_and_the_result_is_right(tmp_path: Path) -> None:
    with control_plane(tmp_path) as server:
        workers = Workers(server, tmp_path)
        try:
            victim = workers.start("v1")
            workers.start("v2")
            workers.wait_registered("v1", "v2")
            job = Job("naps", tasks.square, list(range(40)))
            slow = Job("slow", tasks.nap, [0.1] * 30, speculative=False)
            killed: list[float] = []
            with executor(server) as ex:
                assert job.run(ex).result == [x * x for x in range(40)]

                orphans: list[int] = []

                def kill_one(job_id: str, done: int, total: int) -> None:
                    if not killed and done >= 6:
                        orphans.extend(ex.slot_pids()["v1"])
                        os.kill(victim.pid, signal.SIGKILL)
                        killed.append(time.monotonic())

                outcome = slow.run(ex, progress=kill_one)
            assert killed
            assert outcome.result == [0.1] * 30
            history = [a for t in outcome.report.tasks for a in t.history]
            lost = [a for a in history if a.outcome == "lost"]
            assert lost and all(a.worker_id == "v1" for a in lost)
            assert outcome.report.retries >= 1
            # the killed worker's instance left discovery (its keep-alive stream closed)
            wait_for(lambda: "v1" not in workers.registered(), 10, 0.05, "v1 to leave")
            # and left no slot process running a task behind it
            assert orphans
            wait_for(lambda: not any(alive(pid) for pid in orphans), 10, 0.05, "orphans gone")
        finally:
            workers.stop()


def test_bad_input_gives_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with control_plane(tmp_path) as server:
        with pytest.raises(ExecutorError, match=r"0 shoal worker\(s\) answered within 0.3s"):
            ShoalExecutor(server.url, wait_for_workers=0.3)
        code, _, err = cli(
            capsys, "job", "run", "examples.compute.sum:small_job", "-e", "shoal",
            "--server", server.url, "--resume", "missing-1",
        )  # fmt: skip
        assert code == 1 and "cannot resume 'missing-1': no such job is recorded" in err
    with pytest.raises(
        ExecutorError, match=r"cannot reach the control plane at http://127\.0\.0\.1:9"
    ):
        ShoalExecutor("http://127.0.0.1:9", wait_for_workers=0.3)
    code, _, err = cli(
        capsys, "job", "run", "examples.compute.sum:small_job", "-e", "shoal",
        "--server", "http://127.0.0.1:9",
    )  # fmt: skip
    assert code == 1 and "cannot reach the control plane" in err
    code, _, err = cli(capsys, "job", "run", "examples.compute.sum:small_job", "--resume", "x")
    assert code == 1 and "--resume needs --executor shoal" in err
    code, _, err = cli(capsys, "worker", "--server", "http://127.0.0.1:9", "--resources", "cpu=x")
    assert code != 0 and "'x' is not a number" in err
