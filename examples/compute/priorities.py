"""Two jobs competing for one saturated executor: priorities (and resources) at work.

A long low-priority job is submitted first and fills every worker. While it runs, a
high-priority job arrives: as soon as a worker frees up it takes the high job's tasks,
so the high job finishes first although it came second -- and the low job still
completes. One worker offers a ``gpu`` label; a third job that needs it runs only there.

    python -m examples.compute.priorities
"""

from __future__ import annotations

import time

from shoal.compute import Job, LocalExecutor

__all__ = ["compete", "main", "nap"]


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def compete(
    workers: int = 2, low_tasks: int = 40, high_tasks: int = 8, seconds: float = 0.02
) -> dict[str, float]:
    """Run the contest; return each job's finishing time (seconds since the start)."""
    low = Job("low", nap, [seconds] * low_tasks, priority=0)
    high = Job("high", nap, [seconds] * high_tasks, priority=10)
    gpu = Job("gpu", nap, [seconds] * 4, resources={"cpu": 1, "gpu": 1})
    offers = [{"cpu": 1, "gpu": 1}] + [{"cpu": 1}] * (workers - 1)
    finished: dict[str, float] = {}
    started = time.monotonic()
    with LocalExecutor(workers, resources=offers) as executor:
        ids: dict[str, str] = {"low": executor.submit(low)}

        def progress(job_id: str, done: int, total: int) -> None:
            # The high job arrives once the low one is well under way.
            if job_id == ids["low"] and done >= workers and "high" not in ids:
                ids["high"] = executor.submit(high)
                ids["gpu"] = executor.submit(gpu)
            if done == total:
                name = next(n for n, i in ids.items() if i == job_id)
                finished.setdefault(name, time.monotonic() - started)

        executor.wait([ids["low"]], progress=progress)
        _, gpu_result = executor.wait([ids["high"], ids["gpu"]], progress=progress)
        gpu_workers = {t.worker_id for t in gpu_result.report.tasks}
    finished["gpu workers"] = float(len(gpu_workers))
    return finished


def main() -> None:
    times = compete()
    for name in ("high", "gpu", "low"):
        print(f"{name:>4} job finished after {times[name]:.3f}s")
    print("high finished first:", times["high"] < times["low"])
    print("gpu tasks ran on", int(times["gpu workers"]), "worker(s)")


if __name__ == "__main__":
    main()
