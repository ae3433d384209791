"""`shoal job run` and the examples, run for real (small sizes)."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator

import pytest

from examples.compute import priorities
from examples.compute.sum import SMALL_N
from shoal.cli.main import main


@pytest.fixture(autouse=True)
def no_workers_left_behind() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []


def test_job_run_json_prints_exactly_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["job", "run", "examples.compute.sum:small_job", "--workers", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert set(document) == {"result", "report"}
    assert document["result"] == sum(range(SMALL_N))
    report = document["report"]
    assert report["state"] == "done" and len(report["tasks"]) == 4
    assert report["tasks"][0]["attempts"] == 1 and report["wall_time"] > 0


def test_job_run_with_progress_prints_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["job", "run", "examples.compute.sum:small_job", "-w", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(sum(range(SMALL_N)))
    assert "wall time" in captured.err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples.compute.nope:job", "cannot import 'examples.compute.nope'"),
        ("examples.compute.sum:nope", "has no attribute 'nope'"),
        ("examples.compute.sum:N", "is not a shoal.compute.Job (got int)"),
    ],
)
def test_job_run_bad_targets(target: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["job", "run", target]) == 1
    assert message in capsys.readouterr().err


def test_job_run_unknown_executor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["job", "run", "examples.compute.sum:small_job", "-e", "spark", "--json"]) == 1
    error = capsys.readouterr().err
    assert "unknown executor 'spark'; known executors: dask, local" in error
    assert "shoal" in error


def test_priorities_example_high_finishes_first_and_gpu_stays_on_its_worker() -> None:
    times = priorities.compete(workers=2, low_tasks=16, high_tasks=4, seconds=0.02)
    assert times["high"] < times["low"]
    assert times["gpu workers"] == 1.0
