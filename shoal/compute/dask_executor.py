"""The ``dask`` executor: the same ``Job`` on a ``dask.distributed`` cluster.

This is the one module that imports ``distributed``; its errors become ours here. Dask
does the scheduling, so the guarantees are Dask's: priority (``priority=``), retries
(``retries=``, without backoff), custom resources (any resource other than ``cpu``, which
a Dask worker thread stands for) and re-running the tasks of a lost worker. Per-task
timeouts and speculative copies are features of the local executor's scheduler and are
not applied here; neither is the number of attempts visible, so reports count one.

Map results stay on the workers: the combiner runs there too, as a tree of pairwise
tasks over neighbouring partitions (so it needs associativity only), and only the final
value and a few numbers per task (timings, worker) travel to the driver.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._report import hand_over
from .errors import ExecutorError, JobError
from .errors import JobFailed as JobFailedError
from .job import Job, JobReport, JobResult, Progress, TaskReport

_MISSING: ImportError | None = None
try:
    # Typed as Any on purpose: distributed's API is only partly annotated.
    _dd: Any = importlib.import_module("distributed")
except ImportError as missing:  # pragma: no cover - exercised only without dask installed
    _MISSING = missing

__all__ = ["DaskExecutor"]


@dataclass(frozen=True, slots=True)
class _Timed:
    value: Any
    start: float
    end: float
    worker: str


def _timed(partition: Any, fn: Callable[[Any], Any]) -> _Timed:
    start = time.time()
    value = fn(partition)
    try:
        worker = str(_dd.get_worker().address)
    except ValueError:
        worker = "client"
    return _Timed(value, start, time.time(), worker)


def _value(item: Any) -> Any:
    return item.value if isinstance(item, _Timed) else item


def _meta(item: _Timed) -> tuple[float, float, str]:
    return item.start, item.end, item.worker


def _pair(combine: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    return combine(_value(a), _value(b))


@dataclass(slots=True, eq=False)
class _Run:
    job_id: str
    job: Job
    futures: list[Any]
    final: Any
    submitted_at: float
    finished_at: float | None = None
    result: JobResult | None = None
    error: JobFailedError | None = None
    keys: dict[str, int] = field(default_factory=dict)


def _result_of(run: _Run) -> JobResult:
    assert run.result is not None  # a run handed over has ended; without error, it has one
    return run.result


class DaskExecutor:
    """Run jobs on a Dask cluster at ``address``, or on a ``LocalCluster`` it starts.

    ``workers`` and ``processes`` shape that local cluster (one thread per worker).
    """

    name = "dask"

    def __init__(
        self, address: str | None = None, *, workers: int | None = None, processes: bool = True
    ) -> None:
        if _MISSING is not None:
            raise ExecutorError(
                "the dask executor needs dask.distributed: pip install 'shoal[compute]' "
                f"({_MISSING})"
            )
        self._closed = False
        self._client: Any = None
        self._cluster: Any = None
        count = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise JobError(f"workers must be a positive int, got {workers!r}")
        try:
            if address is None:
                self._cluster = _dd.LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=":0",  # a free port: never collide with another
                )
                self._client = _dd.Client(self._cluster)
            else:
                self._client = _dd.Client(address)
        except OSError as error:
            self.close()
            raise ExecutorError(f"cannot reach the dask scheduler: {error}") from error
        self._runs: dict[str, _Run] = {}
        self._seq = 0

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, job: Job) -> str:
        partitions = job.resolve()
        self._seq += 1
        job_id = f"{job.name}-{self._seq}-{uuid.uuid4().hex[:8]}"  # keys are cluster-wide
        options: dict[str, Any] = {"pure": False, "retries": job.retries, "priority": job.priority}
        extra = {k: v for k, v in job.resources.items() if k != "cpu"}
        if extra:
            options["resources"] = extra
        keys = [f"{job_id}/{i}" for i in range(len(partitions))]
        client = self._client
        futures = client.map(_timed, partitions, fn=job.map_fn, key=keys, **options)
        if job.combine is None:
            final = client.map(_value, futures, pure=False, priority=job.priority)
        else:
            level = list(futures)
            while len(level) > 1:
                nxt = [
                    client.submit(_pair, job.combine, level[i], level[i + 1], **options)
                    for i in range(0, len(level) - 1, 2)
                ]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            final = client.submit(_value, level[0], pure=False, priority=job.priority)
        run = _Run(job_id, job, futures, final, time.monotonic())
        run.keys = {key: i for i, key in enumerate(keys)}
        self._runs[job_id] = run
        return job_id

    def wait(self, job_ids: Sequence[str], *, progress: Progress | None = None) -> list[JobResult]:
        runs = []
        for job_id in job_ids:
            if job_id not in self._runs:
                raise JobError(f"unknown job id {job_id!r}")
            runs.append(self._runs[job_id])
        for run in runs:
            if run.result is None and run.error is None:
                self._finish(run, progress)
        return hand_over(runs, _result_of, self._forget)

    def _forget(self, runs: Sequence[_Run]) -> None:
        """Drop runs whose result (or error) ``wait`` hands over: a second wait is an error."""
        for run in runs:
            self._runs.pop(run.job_id, None)

    def _finish(self, run: _Run, progress: Progress | None) -> None:
        total = len(run.futures)
        for done, future in enumerate(_dd.as_completed(run.futures), start=1):
            if future.status == "error":
                error = future.exception()
                text = "".join(traceback.format_exception(type(error), error, future.traceback()))
                run.futures, run.final = [], None  # dropping the futures releases the rest
                task_id = future.key if isinstance(future.key, str) else str(future.key)
                run.error = JobFailedError(run.job.name, task_id, run.job.retries + 1, text)
                return
            if progress is not None:
                progress(run.job_id, done, total)
        try:
            value = self._client.gather(run.final)
        except Exception:
            text = traceback.format_exc()
            run.error = JobFailedError(run.job.name, "combine", 1, text)
            return
        metas = self._client.gather(self._client.map(_meta, run.futures, pure=False))
        run.finished_at = time.monotonic()
        origin = min((m[0] for m in metas), default=0.0)
        tasks = tuple(
            TaskReport(
                task_id=f"{run.job_id}/{i}",
                index=i,
                worker_id=worker,
                attempts=1,
                speculative_copies=0,
                won_by_speculative=False,
                started_at=start - origin,
                duration=end - start,
            )
            for i, (start, end, worker) in enumerate(metas)
        )
        report = JobReport(
            job_id=run.job_id,
            name=run.job.name,
            executor=self.name,
            state="done",
            wall_time=run.finished_at - run.submitted_at,
            tasks=tasks,
            workers={t.worker_id: None for t in tasks},
        )
        run.futures, run.final = [], None  # let the cluster forget the job's data
        run.result = JobResult(value, report)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
