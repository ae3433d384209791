"""The local executor against the standard library's process pools (and Dask and Ray, if
present).

Two workloads, timed in the same invocation so every figure comes with its reference:

* overhead: 10,000 no-op tasks; the figure is wall time / tasks. "warm" times only the
  map on a pool that is already running; "cold" includes starting and stopping it.
  References: ``concurrent.futures.ProcessPoolExecutor.map``; ``multiprocessing.Pool.map``
  with its default chunking (10,000 tasks on 2 workers become 8 chunks of 1,250, each a
  single opaque task) and with ``chunksize=1`` (every item its own task -- what the local
  executor offers: per-task retries, placement and speculation); Dask ``LocalCluster``
  when ``dask.distributed`` imports; the ray executor on a local Ray instance when ``ray``
  imports ("cold" includes ``ray.init``).
* shoal workers: the same two workloads with ``executor="shoal"`` on two one-slot
  ``shoal worker`` processes on loopback (the same capacity as the local executor's two
  workers), registered at a ``shoal server`` this bench starts in a temporary directory;
  job records on (the default). "warm" times the map on a connected executor; "cold"
  includes connecting to the workers (not starting them).
* sum: 0 + 1 + ... + (10**8 - 1), really summed (``sum(range(a, b))`` per partition):
  ``examples.compute.sum:job`` (64 partitions) on the local executor against a
  hand-written ``multiprocessing.Pool`` mapping the same function over one range per
  worker; plus the local executor with one worker SIGKILLed a quarter of the way in
  (a ``Pool.map`` cannot survive that: it hangs, so it has no reference figure); and the
  same job on the dask executor (a process-based ``LocalCluster``) and on the ray
  executor, when they import.

Every repetition checks its answer. Medians of 3 (1 with --quick, which also shrinks the
workloads to 2,000 tasks and 10**7 numbers).

    .venv/bin/python -m bench.compute            # the full run (~1.5 min on 2 cores, dask included)
    .venv/bin/python -m bench.compute --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import importlib
import logging
import multiprocessing
import operator
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from examples.compute.sum import partial_sum
from shoal.compute import Job, LocalExecutor, ranges

OVERHEAD_GOAL_US = 100.0
SUM_GOAL_RATIO = 0.9


def noop(x: int) -> None:
    return None


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_of(reps: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(reps))


# --- overhead ------------------------------------------------------------------------------


def local_warm(workers: int, n: int) -> float:
    with LocalExecutor(workers) as executor:
        executor.run(Job("warmup", noop, range(workers * 4)))
        started = time.perf_counter()
        outcome = executor.run(Job("noop", noop, range(n)))
        elapsed = time.perf_counter() - started
    assert outcome.result == [None] * n
    return elapsed


def local_cold(workers: int, n: int) -> float:
    return timed(lambda: Job("noop", noop, range(n)).run(workers=workers))


def ppe_warm(workers: int, n: int) -> float:
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        list(pool.map(noop, range(workers * 4)))
        return timed(lambda: list(pool.map(noop, range(n))))


def ppe_cold(workers: int, n: int) -> float:
    def run() -> None:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            list(pool.map(noop, range(n)))

    return timed(run)


def pool_warm(workers: int, n: int) -> float:
    with multiprocessing.Pool(workers) as pool:
        pool.map(noop, range(workers * 4))
        return timed(lambda: pool.map(noop, range(n)))


def pool_cold(workers: int, n: int) -> float:
    def run() -> None:
        with multiprocessing.Pool(workers) as pool:
            pool.map(noop, range(n))

    return timed(run)


def pool1_warm(workers: int, n: int) -> float:
    with multiprocessing.Pool(workers) as pool:
        pool.map(noop, range(workers * 4), chunksize=1)
        return timed(lambda: pool.map(noop, range(n), chunksize=1))


def pool1_cold(workers: int, n: int) -> float:
    def run() -> None:
        with multiprocessing.Pool(workers) as pool:
            pool.map(noop, range(n), chunksize=1)

    return timed(run)


def dask_module() -> Any:
    """``distributed`` if it imports (typed Any: it is only partly annotated), else None."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        return None


def dask_timings(workers: int, n: int) -> tuple[float, float] | None:
    dd = dask_module()
    if dd is None:
        return None

    def run(warm: bool) -> float:
        started = time.perf_counter()
        with (
            dd.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            dd.Client(cluster) as client,
        ):
            if warm:
                client.gather(client.map(noop, range(workers * 4), pure=False))
                started = time.perf_counter()
            client.gather(client.map(noop, range(n), pure=False))
            return time.perf_counter() - started

    return run(True), run(False)


def dask_sum(workers: int, total: int) -> float:
    """The same 64-partition job on the dask executor (a process-based LocalCluster)."""
    from shoal.compute.dask_executor import DaskExecutor

    expected = total * (total - 1) // 2
    job = Job("sum", partial_sum, ranges(0, total, 64), combine=operator.add)
    with DaskExecutor(workers=workers) as executor:
        Job("warmup", noop, range(workers * 4)).run(executor)  # workers import shoal first
        started = time.perf_counter()
        outcome = job.run(executor)
        elapsed = time.perf_counter() - started
    assert outcome.result == expected
    return elapsed


def ray_module() -> Any:
    """``ray`` if it imports (typed Any: it is only partly annotated), else None."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        return None


def ray_timings(workers: int, n: int) -> tuple[float, float]:
    """``n`` no-op tasks on the ray executor: (warm, cold) seconds; cold includes ray.init."""
    from shoal.compute.ray_executor import RayExecutor

    def run(warm: bool) -> float:
        started = time.perf_counter()
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        with RayExecutor(num_cpus=workers, **quiet) as executor:
            if warm:
                Job("warmup", noop, range(workers * 4)).run(executor)
                started = time.perf_counter()
            outcome = Job("noop", noop, range(n)).run(executor)
            elapsed = time.perf_counter() - started
        assert outcome.result == [None] * n
        return elapsed

    return run(True), run(False)


def ray_sum(workers: int, total: int) -> float:
    """The same 64-partition job on the ray executor (a local Ray instance, warm)."""
    from shoal.compute.ray_executor import RayExecutor

    expected = total * (total - 1) // 2
    job = Job("sum", partial_sum, ranges(0, total, 64), combine=operator.add)
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    with RayExecutor(num_cpus=workers, **quiet) as executor:
        Job("warmup", noop, range(workers * 4)).run(executor)  # workers import shoal first
        started = time.perf_counter()
        outcome = job.run(executor)
        elapsed = time.perf_counter() - started
    assert outcome.result == expected
    return elapsed


# --- sum -----------------------------------------------------------------------------------


def local_sum(workers: int, total: int, parts: int, kill: bool = False) -> float:
    expected = total * (total - 1) // 2
    job = Job("sum", partial_sum, ranges(0, total, parts), combine=operator.add)
    killed: list[int] = []
    with LocalExecutor(workers) as executor:

        def maybe_kill(job_id: str, done: int, all_tasks: int) -> None:
            if kill and not killed and done >= all_tasks // 4:
                pid = next(iter(executor.worker_pids().values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        started = time.perf_counter()
        outcome = executor.run(job, progress=maybe_kill)
        elapsed = time.perf_counter() - started
    assert outcome.result == expected, (outcome.result, expected)
    assert killed or not kill
    return elapsed


def pool_sum(workers: int, total: int) -> float:
    expected = total * (total - 1) // 2
    with multiprocessing.Pool(workers) as pool:
        pool.map(noop, range(workers))
        started = time.perf_counter()
        result = sum(pool.map(partial_sum, ranges(0, total, workers)))
        elapsed = time.perf_counter() - started
    assert result == expected
    return elapsed


# --- shoal workers ----------------------------------------------------------------------------


@contextlib.contextmanager
def shoal_cluster(workers: int) -> Iterator[str]:
    """A ``shoal server`` and ``workers`` one-slot ``shoal worker``s; yields the server URL."""
    from shoal.compute.shoal_executor import ShoalExecutor
    from shoal.testing import ServerProcess

    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as root:
        server = ServerProcess("n1", Path(root) / "n1" / "data").start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            server.wait_ready(60)
            for i in range(workers):
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "shoal.cli.main",
                            "worker",
                            "--server",
                            server.url,
                            "--id",
                            f"bench-{i}",
                            "--slots",
                            "1",
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            with ShoalExecutor(server.url, min_workers=workers, wait_for_workers=120):
                pass  # every worker is up and answering
            yield server.url
        finally:
            for proc in procs:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            server.kill()


def shoal_warm(url: str, workers: int, n: int) -> float:
    from shoal.compute.shoal_executor import ShoalExecutor

    with ShoalExecutor(url, min_workers=workers) as executor:
        executor.run(Job("warmup", noop, range(workers * 4)))
        started = time.perf_counter()
        outcome = executor.run(Job("noop", noop, range(n)))
        elapsed = time.perf_counter() - started
    assert outcome.result == [None] * n
    return elapsed


def shoal_cold(url: str, workers: int, n: int) -> float:
    return timed(lambda: Job("noop", noop, range(n)).run("shoal", server=url, min_workers=workers))


def shoal_sum(url: str, workers: int, total: int) -> float:
    from shoal.compute.shoal_executor import ShoalExecutor

    expected = total * (total - 1) // 2
    job = Job("sum", partial_sum, ranges(0, total, 64), combine=operator.add)
    with ShoalExecutor(url, min_workers=workers) as executor:
        Job("warmup", noop, range(workers * 4)).run(executor)  # slot processes import first
        started = time.perf_counter()
        outcome = executor.run(job)
        elapsed = time.perf_counter() - started
    assert outcome.result == expected
    return elapsed


# --- report --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compute", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and 1 rep")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    reps = 1 if args.quick else 3
    n = 2_000 if args.quick else 10_000
    total = 10**7 if args.quick else 10**8
    w = args.workers
    print(
        f"shoal compute bench: {w} workers, {n} no-op tasks, sum of {total:.0e}, median of {reps}"
    )
    print()

    rows: list[tuple[str, float, float]] = []
    candidates: list[tuple[str, Callable[[int, int], float], Callable[[int, int], float]]] = [
        ("shoal local", local_warm, local_cold),
        ("ProcessPoolExecutor.map", ppe_warm, ppe_cold),
        ("Pool.map (default chunks)", pool_warm, pool_cold),
        ("Pool.map chunksize=1", pool1_warm, pool1_cold),
    ]
    for name, warm, cold in candidates:
        warm_s = median_of(reps, functools.partial(warm, w, n))
        cold_s = median_of(reps, functools.partial(cold, w, n))
        rows.append((name, warm_s, cold_s))
    dask: tuple[float, float] | None = None
    if dask_module() is not None:
        runs = [dask_timings(w, n) for _ in range(reps)]
        dask = (
            statistics.median(r[0] for r in runs if r is not None),
            statistics.median(r[1] for r in runs if r is not None),
        )
    header = f"{'per-task overhead':<28}{'warm us/task':>14}{'cold us/task':>14}{'vs local':>10}"
    print(header)
    print("-" * len(header))
    local_us = rows[0][1] / n * 1e6
    for name, warm_s, cold_s in rows:
        us = warm_s / n * 1e6
        print(f"{name:<28}{us:>14.1f}{cold_s / n * 1e6:>14.1f}{us / local_us:>9.2f}x")
    if dask is None:
        print(f"{'dask LocalCluster':<28}{'skipped: dask.distributed is not installed':>38}")
    else:
        print(f"{'dask LocalCluster':<28}{dask[0] / n * 1e6:>14.1f}{dask[1] / n * 1e6:>14.1f}")
    if ray_module() is None:
        print(f"{'shoal on ray':<28}{'skipped: ray is not installed':>38}")
    else:
        ray_runs = [ray_timings(w, n) for _ in range(reps)]
        ray_warm = statistics.median(r[0] for r in ray_runs) / n * 1e6
        ray_cold = statistics.median(r[1] for r in ray_runs) / n * 1e6
        print(f"{'shoal on ray':<28}{ray_warm:>14.1f}{ray_cold:>14.1f}{ray_warm / local_us:>9.2f}x")
    with shoal_cluster(w) as url:
        shoal_w = median_of(reps, lambda: shoal_warm(url, w, n))
        shoal_c = median_of(reps, lambda: shoal_cold(url, w, n))
        shoal_us = shoal_w / n * 1e6
        print(
            f"{'shoal workers (loopback)':<28}{shoal_us:>14.1f}{shoal_c / n * 1e6:>14.1f}"
            f"{shoal_us / local_us:>9.2f}x"
        )
        print()
        shoal_sum_s = median_of(reps, lambda: shoal_sum(url, w, total))

    local_s = median_of(reps, lambda: local_sum(w, total, 64))
    pool_s = median_of(reps, lambda: pool_sum(w, total))
    killed_s = median_of(reps, lambda: local_sum(w, total, 64, kill=True))
    header = f"{'sum of 0..' + format(total, '.0e'):<40}{'seconds':>10}{'throughput vs Pool':>20}"
    print(header)
    print("-" * len(header))
    print(f"{'multiprocessing.Pool over ranges':<40}{pool_s:>10.3f}{1.0:>19.2f}x")
    print(f"{'shoal local, 64 partitions':<40}{local_s:>10.3f}{pool_s / local_s:>19.2f}x")
    print(f"{'shoal local, one worker SIGKILLed':<40}{killed_s:>10.3f}{pool_s / killed_s:>19.2f}x")
    print(f"{'shoal workers, 64 partitions':<40}{shoal_sum_s:>10.3f}{pool_s / shoal_sum_s:>19.2f}x")
    if dask_module() is None:
        print(f"{'shoal on dask LocalCluster':<40}{'skipped: dask.distributed is not installed'}")
    else:
        dask_s = median_of(reps, lambda: dask_sum(w, total))
        print(f"{'shoal on dask LocalCluster':<40}{dask_s:>10.3f}{pool_s / dask_s:>19.2f}x")
    if ray_module() is None:
        print(f"{'shoal on ray (local instance)':<40}{'skipped: ray is not installed'}")
    else:
        ray_s = median_of(reps, lambda: ray_sum(w, total))
        print(f"{'shoal on ray (local instance)':<40}{ray_s:>10.3f}{pool_s / ray_s:>19.2f}x")
    print()

    overhead_ok = local_us < OVERHEAD_GOAL_US
    shoal_ok = shoal_us < OVERHEAD_GOAL_US
    sum_ok = pool_s / local_s >= SUM_GOAL_RATIO
    print(
        f"goal: per-task overhead < {OVERHEAD_GOAL_US:.0f} us: "
        f"{local_us:.1f} us -> {'met' if overhead_ok else 'MISSED'}"
    )
    print(
        f"goal: shoal workers per-task overhead < {OVERHEAD_GOAL_US:.0f} us: "
        f"{shoal_us:.1f} us -> {'met' if shoal_ok else 'MISSED'}"
    )
    print(
        f"goal: sum >= {SUM_GOAL_RATIO}x Pool throughput: "
        f"{pool_s / local_s:.2f}x -> {'met' if sum_ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
