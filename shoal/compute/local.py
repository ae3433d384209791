"""The ``local`` executor: worker processes on this machine, driven by the pure scheduler.

Theory of operation
-------------------
The driver is single-threaded: one loop waits on every worker's pipe and process sentinel
(``multiprocessing.connection.wait``) with a timeout, turns what it sees into scheduler
events, and carries out the instructions that come back. A ``Tick`` is fed at least every
``tick`` seconds (and when a delayed retry falls due), so timeouts, stragglers and
backoff advance even when nothing arrives.

Per-task overhead is the performance goal, so nothing is done per task that can be done
per batch or per job:

* each worker is a scheduler worker with one slot and may hold up to ``batch`` more
  queued attempts (the scheduler's prefetch, for short tasks only); every loop iteration
  sends each worker at most one message with all its new attempts;
* a job's function is cloudpickled once, and sent to a worker once, with its first task;
* a worker runs its queue in order and streams results back in batches (when its queue
  runs dry, every ``batch // 4`` results, or every 2 ms);
* the driver infers starts: the attempt behind the one that just finished on a worker
  started when that one ended (the worker's timestamps use the same monotonic clock).

Failures: a worker whose process dies (sentinel, or EOF on its pipe) is reported
``WorkerLost`` and replaced by a fresh process. Cancelling an attempt that is running
(it timed out, lost a speculative race, or its job failed) kills that worker process the
same way; cancelling one that is only queued just makes its result stale.

Aggregation happens in the driver as results arrive (``RunMerger``): neighbouring
partitions are combined at once, so the answer is the in-order combination whatever order
the results come in, and only the combiner's associativity is relied on.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection, get_all_start_methods, get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ._report import build_report
from ._serialize import dumps_function
from ._slots import worker_main
from .aggregate import RunMerger
from .errors import ExecutorError, JobError
from .errors import JobFailed as JobFailedError
from .job import Job, JobReport, JobResult, Progress
from .scheduler import (
    CancelJob,
    CancelTask,
    Event,
    Instruction,
    JobDone,
    JobFailed,
    JobSubmitted,
    RunTask,
    Scheduler,
    SchedulerConfig,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    Tick,
    WorkerJoined,
    WorkerLost,
)

__all__ = ["LocalExecutor"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_MAX_STARTUP_DEATHS = 5  # workers in a row that die before returning anything


# --- driver-side state ----------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Worker:
    worker_id: str
    process: BaseProcess
    conn: Connection
    fifo: deque[tuple[str, int]] = field(default_factory=deque)  # attempts, in run order
    fns: set[int] = field(default_factory=set)  # jobs whose function it holds
    outbox: list[tuple[int, int, int, Any]] = field(default_factory=list)
    new_fns: list[tuple[int, bytes]] = field(default_factory=list)
    answered: bool = False


@dataclass(slots=True, eq=False)
class _Run:
    """One submitted job, as the driver tracks it."""

    job_no: int
    job_id: str
    job: Job
    partitions: list[Any]
    fn_bytes: bytes
    task_ids: list[str]
    merger: RunMerger
    submitted_at: float
    finished_at: float | None = None
    state: str = "running"  # running | done | failed
    error: JobFailedError | None = None
    timing: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # index -> w, s, e
    done: int = 0
    result: JobResult | None = None


def _default_start_method() -> str:
    # fork starts a worker in milliseconds; elsewhere fall back to the platform's default.
    return "fork" if "fork" in get_all_start_methods() and sys.platform == "linux" else "spawn"


class LocalExecutor:
    """Run jobs on ``workers`` processes of this machine (default: one per CPU).

    ``resources`` is what each worker offers the scheduler (default ``{"cpu": 1}``), or a
    list with one mapping per worker (custom labels such as ``{"cpu": 1, "gpu": 1}``).
    ``batch`` is how many queued tasks a worker may hold beyond the one it runs (short
    tasks only); ``tick`` the longest the driver waits before re-checking timers.
    ``on_worker_started(worker_id, pid)`` is called for every worker process started,
    replacements included (tests use it to kill one mid-job).
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        *,
        resources: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
        batch: int = 32,
        tick: float = 0.02,
        start_method: str | None = None,
        config: SchedulerConfig | None = None,
        on_worker_started: Callable[[str, int], None] | None = None,
    ) -> None:
        count = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise JobError(f"workers must be a positive int, got {workers!r}")
        if batch < 0 or tick <= 0:
            raise JobError(f"batch must be >= 0 and tick > 0, got batch={batch}, tick={tick}")
        if resources is None:
            per_worker: list[Mapping[str, float]] = [{"cpu": 1}] * count
        elif isinstance(resources, Mapping):
            per_worker = [dict(resources)] * count
        else:
            per_worker = [dict(r) for r in resources]
            if len(per_worker) != count:
                raise JobError(f"{len(per_worker)} resource mappings for {count} workers")
        try:
            self._ctx: Any = get_context(start_method or _default_start_method())
        except ValueError as error:
            raise JobError(str(error)) from None
        if config is None:
            config = SchedulerConfig(prefetch=batch)
        self._scheduler = Scheduler(config)
        self._tick = tick
        self._flush_every = max(1, batch // 4)
        self._on_worker_started = on_worker_started
        self._workers: dict[str, _Worker] = {}
        self._resources: dict[str, dict[str, float]] = {}
        self._by_waitable: dict[Any, _Worker] = {}
        self._zombies: list[BaseProcess] = []
        self._runs: dict[str, _Run] = {}
        self._by_no: dict[int, _Run] = {}
        self._task_ref: dict[str, tuple[_Run, int]] = {}
        self._pids: dict[str, int | None] = {}
        self._events: deque[Event] = deque()
        self._busy = False
        self._touched: set[str] = set()
        self._seq = 0
        self._spawned = 0
        self._startup_deaths = 0
        self._next_tick = 0.0
        self._closed = False
        try:
            for resources_of in per_worker:
                self._start_worker(resources_of)
            self._process_events()
        except BaseException:
            self.close()
            raise

    # -- public API --

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def worker_pids(self) -> dict[str, int]:
        """The live worker processes: worker id -> pid."""
        return {wid: w.process.pid for wid, w in self._workers.items() if w.process.pid is not None}

    def submit(self, job: Job) -> str:
        """Hand ``job`` to the scheduler; its first tasks are sent to workers at once."""
        self._check_open()
        partitions = job.resolve()
        self._seq += 1
        job_id = f"{job.name}-{self._seq}"
        specs = job.task_specs(job_id, len(partitions))
        if not self._scheduler.can_ever_place(specs[0]):
            offered = sorted({str(dict(self._resources_of(w))) for w in self._workers})
            raise ExecutorError(
                f"job {job.name!r} needs resources {dict(job.resources)} per task, "
                f"which no worker offers (workers offer {', '.join(offered)})"
            )
        run = _Run(
            job_no=self._seq,
            job_id=job_id,
            job=job,
            partitions=partitions,
            fn_bytes=dumps_function(job.map_fn, f"job {job.name!r}: map_fn"),
            task_ids=[s.task_id for s in specs],
            merger=RunMerger(len(partitions), job.combine),
            submitted_at=time.monotonic(),
        )
        self._runs[job_id] = run
        self._by_no[run.job_no] = run
        for index, task_id in enumerate(run.task_ids):
            self._task_ref[task_id] = (run, index)
        self._feed(JobSubmitted(job_id, specs, job.priority, run.submitted_at, f"submit-{job_id}"))
        self._flush()
        return job_id

    def wait(self, job_ids: Sequence[str], *, progress: Progress | None = None) -> list[JobResult]:
        """Drive the workers until every job in ``job_ids`` has ended; see ``Executor``."""
        self._check_open()
        runs = []
        for job_id in job_ids:
            if job_id not in self._runs:
                raise JobError(f"unknown job id {job_id!r}")
            runs.append(self._runs[job_id])
        self._drive(lambda: all(r.state != "running" for r in runs), progress)
        results = []
        for run in runs:
            if run.error is not None:
                raise run.error
            results.append(self._result(run))
        return results

    def run(self, job: Job, *, progress: Progress | None = None) -> JobResult:
        return self.wait([self.submit(job)], progress=progress)[0]

    def close(self) -> None:
        """Stop every worker (politely, then by force); idempotent."""
        if self._closed:
            return
        self._closed = True
        stop = pickle.dumps(("stop",), _PROTOCOL)
        for worker in self._workers.values():
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(stop)
        deadline = time.monotonic() + 2.0
        for worker in self._workers.values():
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.conn.close()
        for process in self._zombies:
            process.join(1.0)
        self._workers.clear()
        self._by_waitable.clear()
        self._zombies.clear()

    # -- the loop --

    def _drive(self, done: Callable[[], bool], progress: Progress | None) -> None:
        clock = time.monotonic
        while True:
            self._flush()
            self._report(progress)
            if done():
                return
            now = clock()
            if now >= self._next_tick:
                self._next_tick = now + self._tick
                self._feed(Tick(now))
                continue
            timeout = self._next_tick - now
            wake = self._scheduler.next_wakeup()
            if wake is not None:
                timeout = min(timeout, max(0.0, wake - now))
            for ready in connection.wait(list(self._by_waitable), timeout):
                worker = self._by_waitable.get(ready)
                if worker is None or worker.worker_id not in self._workers:
                    continue  # retired earlier in this round
                if ready is worker.conn:
                    self._receive(worker)
                else:
                    self._retire(worker, f"worker {worker.worker_id} died", kill=False)
            if wake is not None and clock() >= wake:
                self._feed(Tick(clock()))
            self._reap()

    def _receive(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while True:
                batch = pickle.loads(conn.recv_bytes())
                self._on_results(worker, batch)
                if worker.worker_id not in self._workers or not conn.poll():
                    return
        except (EOFError, OSError):
            if worker.worker_id in self._workers:
                self._retire(worker, f"worker {worker.worker_id} closed its pipe", kill=True)

    def _on_results(self, worker: _Worker, batch: list[tuple[Any, ...]]) -> None:
        worker.answered = True
        self._startup_deaths = 0
        scheduler = self._scheduler
        wid = worker.worker_id
        fifo = worker.fifo
        touched = self._touched
        for job_no, index, attempt, ok, value, start, end in batch:
            run = self._by_no[job_no]
            task_id = run.task_ids[index]
            key = (task_id, attempt)
            if fifo and fifo[0] == key:
                fifo.popleft()
            else:
                with contextlib.suppress(ValueError):
                    fifo.remove(key)
            if ok:
                if run.state == "running" and scheduler.is_live(task_id, attempt):
                    run.timing[index] = (wid, start, end)
                    run.done += 1
                    touched.add(run.job_id)
                    try:
                        run.merger.add(index, value)
                    except Exception:
                        error = "the combine function raised:\n" + traceback.format_exc()
                        self._feed(CancelJob(run.job_id, error, f"combine-{task_id}"))
                self._feed(TaskFinished(task_id, attempt, wid, end))
            else:
                self._feed(TaskFailed(task_id, attempt, wid, value, end))
            if fifo:
                head_task, head_attempt = fifo[0]
                self._feed(TaskStarted(head_task, head_attempt, wid, end))

    # -- events and instructions --

    def _feed(self, event: Event) -> None:
        """Queue ``event`` and, unless already doing so, process the queue to empty."""
        self._events.append(event)
        if not self._busy:
            self._process_events()

    def _process_events(self) -> None:
        self._busy = True
        try:
            events, handle = self._events, self._scheduler.handle
            while events:
                for instruction in handle(events.popleft()):
                    self._execute(instruction)
        finally:
            self._busy = False

    def _execute(self, instruction: Instruction) -> None:
        if type(instruction) is RunTask:
            worker = self._workers.get(instruction.worker_id)
            if worker is None:
                return  # retired; its WorkerLost (queued) reschedules this attempt
            run, index = self._task_ref[instruction.task_id]
            if run.job_no not in worker.fns:
                worker.fns.add(run.job_no)
                worker.new_fns.append((run.job_no, run.fn_bytes))
            worker.outbox.append((run.job_no, index, instruction.attempt, run.partitions[index]))
            worker.fifo.append((instruction.task_id, instruction.attempt))
            if len(worker.fifo) == 1:
                self._events.append(
                    TaskStarted(
                        instruction.task_id, instruction.attempt, worker.worker_id, time.monotonic()
                    )
                )
        elif isinstance(instruction, CancelTask):
            worker = self._workers.get(instruction.worker_id)
            key = (instruction.task_id, instruction.attempt)
            if worker is not None and worker.fifo and worker.fifo[0] == key:
                self._retire(worker, f"cancelled: {instruction.reason}", kill=True)
        elif isinstance(instruction, JobDone):
            run = self._runs[instruction.job_id]
            run.state = "done"
            run.finished_at = time.monotonic()
            self._touched.add(run.job_id)
            self._drop(run)
        elif isinstance(instruction, JobFailed):
            run = self._runs[instruction.job_id]
            run.state = "failed"
            run.finished_at = time.monotonic()
            run.error = JobFailedError(
                run.job.name, instruction.task_id, instruction.attempts, instruction.error
            )
            self._touched.add(run.job_id)
            self._drop(run)

    def _flush(self) -> None:
        """Send every worker its new attempts (one message each)."""
        for worker in self._workers.values():
            if not worker.outbox:
                continue
            message = ("run", worker.new_fns, worker.outbox)
            try:
                data = pickle.dumps(message, _PROTOCOL)
            except Exception:
                from ._serialize import dumps_data

                data = dumps_data(message)
            worker.outbox = []
            worker.new_fns = []
            try:
                worker.conn.send_bytes(data)
            except OSError:
                self._retire(worker, f"worker {worker.worker_id} closed its pipe", kill=True)
                return  # the dict changed; the rest go out on the next flush

    def _drop(self, run: _Run) -> None:
        message = pickle.dumps(("drop", [run.job_no]), _PROTOCOL)
        for worker in self._workers.values():
            if run.job_no in worker.fns and not worker.outbox:
                worker.fns.discard(run.job_no)
                with contextlib.suppress(OSError):  # its death is noticed by the loop
                    worker.conn.send_bytes(message)

    def _report(self, progress: Progress | None) -> None:
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        if progress is None:
            return
        for job_id in sorted(touched):
            run = self._runs[job_id]
            progress(job_id, run.done, len(run.task_ids))

    # -- workers --

    def _start_worker(self, resources: Mapping[str, float]) -> None:
        self._spawned += 1
        worker_id = f"local-{self._spawned}"
        parent, child = self._ctx.Pipe(duplex=True)
        inherited = [w.conn for w in self._workers.values()] + [parent]
        process = self._ctx.Process(
            target=worker_main,
            args=(child, inherited if self._ctx.get_start_method() == "fork" else []),
            kwargs={"flush_every": self._flush_every},
            name=f"shoal-{worker_id}",
            daemon=True,
        )
        try:
            process.start()
        except OSError as error:
            raise ExecutorError(f"could not start a worker process: {error}") from error
        finally:
            child.close()
        worker = _Worker(worker_id, process, parent)
        self._workers[worker_id] = worker
        self._resources[worker_id] = dict(resources)
        self._by_waitable[parent] = worker
        self._by_waitable[process.sentinel] = worker
        self._pids[worker_id] = process.pid
        self._events.append(WorkerJoined(worker_id, resources, 1, f"join-{worker_id}"))
        if self._on_worker_started is not None and process.pid is not None:
            self._on_worker_started(worker_id, process.pid)

    def _resources_of(self, worker_id: str) -> Mapping[str, float]:
        return self._resources[worker_id]

    def _retire(self, worker: _Worker, reason: str, *, kill: bool) -> None:
        """Remove a worker (killing its process if asked), report it lost, start another."""
        worker_id = worker.worker_id
        if kill and worker.process.is_alive():
            worker.process.kill()
        if not worker.answered:
            self._startup_deaths += 1
        del self._workers[worker_id]
        self._by_waitable.pop(worker.conn, None)
        self._by_waitable.pop(worker.process.sentinel, None)
        worker.conn.close()
        self._zombies.append(worker.process)
        self._events.append(WorkerLost(worker_id, f"lost-{worker_id}: {reason}"))
        if self._startup_deaths > _MAX_STARTUP_DEATHS:
            error = f"{self._startup_deaths} worker processes in a row died before answering"
            for run in self._runs.values():
                if run.state == "running":
                    self._events.append(CancelJob(run.job_id, error))
        else:
            self._start_worker(self._resources[worker_id])
        if not self._busy:
            self._process_events()

    def _reap(self) -> None:
        if self._zombies:
            for process in self._zombies:
                process.join(0)
            self._zombies = [p for p in self._zombies if p.is_alive()]

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorError("this executor is closed")

    # -- reports --

    def _result(self, run: _Run) -> JobResult:
        if run.result is None:
            run.result = JobResult(run.merger.result(), self._job_report(run))
        return run.result

    def _job_report(self, run: _Run) -> JobReport:
        return build_report(
            self._scheduler,
            executor=self.name,
            job_id=run.job_id,
            name=run.job.name,
            state=run.state,
            task_ids=run.task_ids,
            timing=run.timing,
            submitted_at=run.submitted_at,
            finished_at=run.finished_at if run.finished_at is not None else time.monotonic(),
            pids=self._pids,
        )
