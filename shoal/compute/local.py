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

The loop and the scheduler plumbing are the scheduler loop's (``_loop``, shared with the
``shoal`` and ``ray`` executors); result merging and reports are the lane driver core's
(``_driver``, shared with the ``shoal`` executor), and so is forgetting a job once
``wait`` has handed over its result; this module holds the pipes and processes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import connection, get_all_start_methods, get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ._driver import PROTOCOL, DriverCore, Lane, Run, RunState, encode_run
from ._slots import worker_main
from .errors import ExecutorError, JobError
from .job import Job
from .scheduler import (
    CancelJob,
    CancelTask,
    JobSubmitted,
    RunTask,
    Scheduler,
    SchedulerConfig,
    WorkerJoined,
    WorkerLost,
)

__all__ = ["LocalExecutor"]

_MAX_STARTUP_DEATHS = 5  # workers in a row that die before returning anything


# --- driver-side state ----------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Worker(Lane):
    worker_id: str
    process: BaseProcess
    conn: Connection
    answered: bool = False


def _default_start_method() -> str:
    # fork starts a worker in milliseconds; elsewhere fall back to the platform's default.
    return "fork" if "fork" in get_all_start_methods() and sys.platform == "linux" else "spawn"


class LocalExecutor(DriverCore):
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
        super().__init__(Scheduler(config), tick)
        self._flush_every = max(1, batch // 4)
        self._on_worker_started = on_worker_started
        self._workers: dict[str, _Worker] = {}
        self._resources: dict[str, dict[str, float]] = {}
        self._by_waitable: dict[Any, _Worker] = {}
        self._zombies: list[BaseProcess] = []
        self._spawned = 0
        self._startup_deaths = 0
        try:
            for resources_of in per_worker:
                self._start_worker(resources_of)
            self._process_events()
        except BaseException:
            self.close()
            raise

    # -- public API --

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
        offered = sorted({str(dict(self._resources[w])) for w in self._workers})
        self._check_placeable(job, specs[0], "worker", offered)
        run = self._new_run(job, job_id, partitions, specs)
        self._feed(JobSubmitted(job_id, specs, job.priority, run.submitted_at, f"submit-{job_id}"))
        self._flush()
        return job_id

    def _shut_down(self) -> None:
        """Stop every worker (politely, then by force)."""
        stop = pickle.dumps(("stop",), PROTOCOL)
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

    def _poll(self, timeout: float) -> None:
        for ready in connection.wait(list(self._by_waitable), timeout):
            worker = self._by_waitable.get(ready)
            if worker is None or worker.worker_id not in self._workers:
                continue  # retired earlier in this round
            if ready is worker.conn:
                self._receive(worker)
            else:
                self._retire(worker, f"worker {worker.worker_id} died", kill=False)
        if self._zombies:
            for process in self._zombies:
                process.join(0)
            self._zombies = [p for p in self._zombies if p.is_alive()]

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
        self._take_results(worker.worker_id, worker.fifo, batch)

    # -- instructions --

    def _run_task(self, instruction: RunTask, run: Run, index: int) -> None:
        worker = self._workers.get(instruction.worker_id)
        if worker is not None:  # else retired; its WorkerLost (queued) reschedules this
            self._enqueue(worker, worker.worker_id, run, index, instruction.attempt)

    def _cancel_task(self, instruction: CancelTask, run: Run, index: int) -> None:
        key = (run.job_no, index, instruction.attempt)
        worker = self._workers.get(instruction.worker_id)
        if worker is not None and worker.fifo and worker.fifo[0] == key:
            self._retire(worker, f"cancelled: {instruction.reason}", kill=True)

    def _flush(self) -> None:
        """Send every worker its new attempts (one message each)."""
        for worker in self._workers.values():
            if not worker.outbox:
                continue
            data = encode_run(worker.new_fns, worker.outbox)
            worker.outbox = []
            worker.new_fns = []
            try:
                worker.conn.send_bytes(data)
            except OSError:
                self._retire(worker, f"worker {worker.worker_id} closed its pipe", kill=True)
                return  # the dict changed; the rest go out on the next flush

    def _drop(self, run: Run) -> None:
        message = pickle.dumps(("drop", [run.job_no]), PROTOCOL)
        for worker in self._workers.values():
            if run.job_no in worker.fns and not worker.outbox:
                worker.fns.discard(run.job_no)
                with contextlib.suppress(OSError):  # its death is noticed by the loop
                    worker.conn.send_bytes(message)

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
                if run.state is RunState.RUNNING:
                    self._events.append(CancelJob(run.job_id, error))
        else:
            self._start_worker(self._resources[worker_id])
        if not self._busy:
            self._process_events()
