"""The ``ray`` executor: the same ``Job`` on a Ray cluster.

This is the one module that imports ``ray``; its errors become ours here. Ray places and
runs the tasks; the driver (the caller's thread, inside ``wait``) keeps the job engine's
semantics on top:

* Resources. A task asks Ray for the job's ``resources``: ``cpu`` -> ``num_cpus`` (0 if
  absent), ``gpu`` -> ``num_gpus``, ``memory`` -> ``memory`` (bytes, Ray's unit), every
  other label -> a custom resource. A job that no live node could ever fit is refused at
  ``submit`` with ``ExecutorError`` (Ray itself would wait for such a node for ever; pass
  ``check_resources=False`` on an autoscaling cluster, where one may yet appear).
* Retries. Every attempt is one Ray task with Ray's own retries off, so the driver sees
  each failure -- an exception, a worker that died, a timeout -- and retries it after
  ``backoff * 2**(failures - 1)`` seconds (at most 30) until it has failed
  ``retries + 1`` times; then the job fails with the task's original traceback (formatted
  in the worker) and its other attempts are cancelled. Reports list every attempt.
* Timeouts. A job with a ``timeout`` runs its tasks as streaming generators that announce
  their start, so an attempt is timed from when it started running (not from when it was
  queued) and is force-cancelled -- its worker process killed -- when it overruns. That
  costs a round trip more per task, so jobs without a timeout use plain tasks.
* Priority. The driver hands Ray at most ``max_in_flight`` attempts at a time, taking
  them from the job with the highest ``priority`` first (retries ahead of untried tasks);
  what Ray already holds runs in Ray's order. No speculative copies are made.

Map results stay in Ray's object store: the combiner runs there too, as a tree of pairwise
tasks over neighbouring partitions (the shape of ``aggregate.tree_reduce``, so it needs
associativity only), each pair launched as soon as both of its inputs exist. Only the
final value and a few numbers per attempt (timings, node/worker id, pid, error text)
travel to the driver -- and, for a job without a combiner, each result with its numbers,
since they all end up in the driver anyway. Because Ray's retries are off, a node lost
*after* its tasks finished takes their results with it and fails the job (Ray's lineage
reconstruction would need its retries on).
"""

from __future__ import annotations

import contextlib
import heapq
import importlib
import itertools
import os
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._report import hand_over, report_progress
from .errors import ExecutorError, JobError
from .errors import JobFailed as JobFailedError
from .job import AttemptReport, Job, JobReport, JobResult, Progress, TaskReport

_MISSING: ImportError | None = None
try:
    # Typed as Any on purpose: ray's API is only partly annotated.
    _ray: Any = importlib.import_module("ray")
except ImportError as missing:  # pragma: no cover - exercised only without ray installed
    _MISSING = missing

__all__ = ["RayExecutor"]

_MAX_BACKOFF = 30.0  # the scheduler's default max_backoff: the same retry timing everywhere
_TICK = 1.0  # the longest the driver waits without looking at its timers

# --- what runs on the Ray workers ---------------------------------------------------------

Meta = tuple[float, float, str, int, str]  # start, end (wall clock), worker id, pid, error

_IDENTITY: tuple[str, int] | None = None


def _identity() -> tuple[str, int]:
    """``("<node id>/<worker id>", pid)`` of this Ray worker (12 hex digits of each id)."""
    global _IDENTITY
    if _IDENTITY is None:
        context = _ray.get_runtime_context()
        _IDENTITY = (f"{context.get_node_id()[:12]}/{context.get_worker_id()[:12]}", os.getpid())
    return _IDENTITY


def _attempt(fn: Callable[[Any], Any], partition: Any) -> tuple[Any, Meta]:
    """One attempt: ``(value, meta)``; an exception in ``fn`` comes back as its traceback."""
    worker, pid = _identity()
    start = time.time()
    try:
        value = fn(partition)
    except Exception:
        return None, (start, time.time(), worker, pid, traceback.format_exc())
    return value, (start, time.time(), worker, pid, "")


def _streamed_attempt(fn: Callable[[Any], Any], partition: Any) -> Iterator[Any]:
    """``_attempt`` that announces its start first: yields ``(start, worker, pid)``, meta, value."""
    worker, pid = _identity()
    yield (time.time(), worker, pid)
    value, meta = _attempt(fn, partition)
    yield meta
    yield value


@dataclass(frozen=True, slots=True)
class _CombineFailed:
    """What a pair task returns when ``combine`` raised: its traceback, passed up the tree."""

    traceback: str


def _pair(combine: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    for side in (a, b):
        if isinstance(side, _CombineFailed):
            return side
    try:
        return combine(a, b)
    except Exception:
        return _CombineFailed(traceback.format_exc())


if _MISSING is None:
    # One object (value, meta): results that go to the driver anyway (no combiner).
    _remote_joined: Any = _ray.remote(max_retries=0)(_attempt)
    # Two objects: the value stays in the object store for the combine tree.
    _remote_split: Any = _ray.remote(num_returns=2, max_retries=0)(_attempt)
    _remote_streamed: Any = _ray.remote(num_returns="streaming", max_retries=0)(_streamed_attempt)
    _remote_pair: Any = _ray.remote(_pair)

# --- the driver ---------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Attempt:
    run: _Run
    index: int
    number: int
    waitable: Any = None  # what the driver waits on: an ObjectRef or an ObjectRefGenerator
    value_ref: Any = None  # split mode: the value, left in the object store
    stage: int = 0  # streamed: 0 awaits the start, 1 the meta, 2 the value
    started: float | None = None  # monotonic, once a streamed attempt announced its start
    meta: Meta | None = None


@dataclass(slots=True, eq=False)
class _Run:
    job_id: str
    job: Job
    seq: int
    mode: str  # joined | split | streamed (see the remote functions above)
    partitions: list[Any]
    options: dict[str, Any]
    remote: Any  # the remote function of an attempt, the job's options applied
    fn_ref: Any
    combine_ref: Any
    submitted_at: float  # monotonic
    submitted_wall: float  # time.time(): the origin of the workers' timestamps
    pending: deque[int]
    failures: list[int]
    history: list[list[AttemptReport]]
    winners: list[AttemptReport | None]
    values: list[Any]  # no combiner: each partition's result (streamed: its ObjectRef)
    levels: list[dict[int, Any]]  # the combine tree's waiting slots, level by level
    sizes: list[int]  # the combine tree's width, level by level
    final: Any = None
    live: set[_Attempt] = field(default_factory=set)
    pids: dict[str, int] = field(default_factory=dict)
    done: int = 0
    state: str = "running"  # running | done | failed
    finished_at: float | None = None
    result: JobResult | None = None
    error: JobFailedError | None = None


def _result_of(run: _Run) -> JobResult:
    assert run.result is not None  # a run handed over has ended; without error, it has one
    return run.result


def _ray_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """The job's resources as ``ray.remote`` options (see the module docstring)."""
    options: dict[str, Any] = {"num_cpus": resources.get("cpu", 0)}
    if "gpu" in resources:
        options["num_gpus"] = resources["gpu"]
    if "memory" in resources:
        options["memory"] = int(resources["memory"])
    custom = {k: float(v) for k, v in resources.items() if k not in ("cpu", "gpu", "memory")}
    if custom:
        options["resources"] = custom
    return options


def _ray_needs(options: Mapping[str, Any]) -> dict[str, float]:
    """What one task takes from a node, in the names of ``ray.nodes()``."""
    needs = {"CPU": float(options["num_cpus"]), "GPU": float(options.get("num_gpus", 0))}
    needs["memory"] = float(options.get("memory", 0))
    needs.update(options.get("resources", {}))
    return {k: v for k, v in needs.items() if v > 0}


def _tree_sizes(count: int) -> list[int]:
    """The width of every level of ``tree_reduce``'s tree over ``count`` leaves."""
    sizes = [count]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _positive_int(value: Any, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise JobError(f"{what} must be a positive int, got {value!r}")


class RayExecutor:
    """Run jobs on a Ray cluster.

    ``address`` is what ``ray.init`` takes. ``None`` runs on the Ray connection this
    process already has, else does what ``ray.init()`` does (joins a cluster that ``ray
    start`` recorded on this machine, or starts a local instance); ``"local"`` always
    starts a local instance; ``"auto"`` joins the cluster running on this machine;
    ``"ray://host:10001"`` connects through Ray Client. ``num_cpus`` (or ``workers``, as
    the other executors call it) sizes a local instance (default: every core);
    ``init_options`` go to ``ray.init`` (``include_dashboard`` defaults to False).
    ``max_in_flight`` bounds the attempts handed to Ray at a time (default: 16 per CPU of
    the cluster). ``close()`` shuts Ray down only if this executor started it.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        workers: int | None = None,
        max_in_flight: int | None = None,
        check_resources: bool = True,
        **init_options: Any,
    ) -> None:
        if _MISSING is not None:
            raise ExecutorError(
                f"the ray executor needs ray: pip install 'shoal[compute]' ({_MISSING})"
            )
        if workers is not None:  # the other executors' word for it: one task per CPU
            if num_cpus is not None:
                raise JobError("give num_cpus or workers, not both")
            num_cpus = workers
        _positive_int(num_cpus, "workers" if workers is not None else "num_cpus")
        _positive_int(max_in_flight, "max_in_flight")
        if num_cpus is not None and address not in (None, "local"):
            raise JobError("num_cpus sizes a local Ray instance; it cannot apply to an address")
        self._closed = False
        self._owns_ray = False
        if _ray.is_initialized():
            if address is not None or num_cpus is not None or init_options:
                raise ExecutorError(
                    "ray is already initialized in this process; use RayExecutor() without "
                    "address, num_cpus or init options to run on that connection"
                )
        else:
            init_options.setdefault("include_dashboard", False)
            try:
                _ray.init(address=address, num_cpus=num_cpus, **init_options)
            except Exception as error:  # ConnectionError, RuntimeError, ValueError, ...
                raise ExecutorError(f"cannot start or reach ray: {error}") from error
            self._owns_ray = True
        self._check_resources = check_resources
        if max_in_flight is None:
            max_in_flight = 16 * max(1, int(_ray.cluster_resources().get("CPU", 1)))
        self._max_in_flight = max_in_flight
        self._runs: dict[str, _Run] = {}
        self._active: list[_Run] = []  # running jobs, highest priority first
        self._waiting: dict[Any, _Attempt] = {}  # waitable -> attempt
        self._delayed: list[tuple[float, int, _Run, int]] = []  # retries in backoff (heap)
        self._touched: set[str] = set()
        self._seq = 0
        self._ticket = itertools.count()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API --

    def submit(self, job: Job) -> str:
        """Hand ``job`` over; its first tasks start at once."""
        self._check_open()
        partitions = job.resolve()
        options = _ray_options(job.resources)
        job_id = f"{job.name}-{self._seq + 1}-{uuid.uuid4().hex[:8]}"  # names are cluster-wide
        if job.timeout is not None:
            mode, task = "streamed", _remote_streamed
        else:
            mode, task = (
                ("joined", _remote_joined) if job.combine is None else ("split", _remote_split)
            )
        try:
            remote = task.options(name=job_id, **options)
        except ValueError as error:  # e.g. a resource name Ray reserves, such as "CPU"
            raise JobError(f"job {job.name!r}: ray refuses its resources: {error}") from None
        if self._check_resources:
            self._check_fits(job, options)
        try:
            fn_ref = _ray.put(job.map_fn)
            combine_ref = None if job.combine is None else _ray.put(job.combine)
        except Exception as error:  # Job pickled both already: this is Ray failing
            raise ExecutorError(f"job {job.name!r}: ray could not store it: {error}") from error
        self._seq += 1
        count = len(partitions)
        sizes = _tree_sizes(count) if job.combine is not None else []
        run = _Run(
            job_id=job_id,
            job=job,
            seq=self._seq,
            mode=mode,
            partitions=partitions,
            options=options,
            remote=remote,
            fn_ref=fn_ref,
            combine_ref=combine_ref,
            submitted_at=time.monotonic(),
            submitted_wall=time.time(),
            pending=deque(range(count)),
            failures=[0] * count,
            history=[[] for _ in range(count)],
            winners=[None] * count,
            values=[None] * count if job.combine is None else [],
            levels=[{} for _ in sizes],
            sizes=sizes,
        )
        self._runs[job_id] = run
        self._active.append(run)
        self._active.sort(key=lambda r: (-r.job.priority, r.seq))
        self._launch()
        return job_id

    def wait(self, job_ids: Sequence[str], *, progress: Progress | None = None) -> list[JobResult]:
        """Drive Ray until every job in ``job_ids`` has ended; see ``Executor``."""
        self._check_open()
        runs = []
        for job_id in job_ids:
            if job_id not in self._runs:
                raise JobError(f"unknown job id {job_id!r}")
            runs.append(self._runs[job_id])
        while any(r.state == "running" for r in runs):
            self._step()
            self._report(progress)
        self._report(progress)
        return hand_over(runs, _result_of, self._forget)

    def _forget(self, runs: Sequence[_Run]) -> None:
        """Drop runs whose result (or error) ``wait`` hands over: a second wait is an error."""
        for run in runs:
            self._runs.pop(run.job_id, None)
            self._touched.discard(run.job_id)

    def run(self, job: Job, *, progress: Progress | None = None) -> JobResult:
        return self.wait([self.submit(job)], progress=progress)[0]

    def close(self) -> None:
        """Cancel what is still running; shut Ray down if this executor started it."""
        if self._closed:
            return
        self._closed = True
        for run in self._active:
            self._cancel_live(run)
        self._waiting.clear()
        self._delayed.clear()
        self._active.clear()
        if self._owns_ray and _ray.is_initialized():
            _ray.shutdown()

    # -- submission --

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorError("this executor is closed")

    def _check_fits(self, job: Job, options: Mapping[str, Any]) -> None:
        needs = _ray_needs(options)
        nodes = [n.get("Resources", {}) for n in _ray.nodes() if n.get("Alive")]
        if any(all(node.get(k, 0) >= v for k, v in needs.items()) for node in nodes):
            return
        offered = sorted(
            str({k: v for k, v in node.items() if not k.startswith("node:")}) for node in nodes
        )
        raise ExecutorError(
            f"job {job.name!r} needs resources {dict(job.resources)} per task (ray: {needs}), "
            f"which no live ray node offers (nodes offer {', '.join(offered) or 'nothing'}); "
            "on an autoscaling cluster pass check_resources=False"
        )

    def _launch(self) -> None:
        """Hand Ray attempts, highest-priority job first, up to ``max_in_flight``."""
        room = self._max_in_flight - len(self._waiting)
        for run in self._active:
            while room > 0 and run.pending:
                self._start_attempt(run, run.pending.popleft())
                room -= 1
            if room <= 0:
                return

    def _start_attempt(self, run: _Run, index: int) -> None:
        attempt = _Attempt(run, index, len(run.history[index]) + 1)
        handle = run.remote.remote(run.fn_ref, run.partitions[index])
        if run.mode == "split":
            attempt.value_ref, attempt.waitable = handle
        else:
            attempt.waitable = handle
        self._waiting[attempt.waitable] = attempt
        run.live.add(attempt)

    # -- the loop --

    def _step(self) -> None:
        now = time.monotonic()
        self._release_due(now)
        self._check_timeouts(now)
        self._launch()
        deadline = now + _TICK
        if self._delayed:
            deadline = min(deadline, self._delayed[0][0])
        for attempt in self._waiting.values():
            timeout = attempt.run.job.timeout
            if attempt.started is not None and timeout is not None:
                deadline = min(deadline, attempt.started + timeout)
        wait_for = max(0.0, deadline - time.monotonic())
        waitables = list(self._waiting)
        if not waitables:
            if self._delayed:
                time.sleep(wait_for)
            return
        ready, _ = _ray.wait(waitables, num_returns=1, timeout=wait_for)
        if ready and len(waitables) > 1:
            ready, _ = _ray.wait(waitables, num_returns=len(waitables), timeout=0)
        plain = []
        for waitable in ready:
            found = self._waiting.pop(waitable, None)
            if found is None:
                continue  # its job failed while an earlier one of this batch was handled
            if found.run.mode == "streamed":
                self._advance_stream(found)
            else:
                plain.append(found)
        if plain:
            for attempt, got in zip(plain, self._get_all([a.waitable for a in plain]), strict=True):
                if isinstance(got, Exception):
                    self._settle(attempt, self._lost(attempt, got), None)
                elif attempt.run.mode == "joined":
                    self._settle(attempt, got[1], got[0])
                else:
                    self._settle(attempt, got, attempt.value_ref)

    def _get_all(self, refs: list[Any]) -> list[Any]:
        """``ray.get`` of small objects in one call; each failure as its exception."""
        try:
            return list(_ray.get(refs))
        except _ray.exceptions.RayError:
            pass
        out: list[Any] = []
        for ref in refs:
            try:
                out.append(_ray.get(ref))
            except _ray.exceptions.RayError as error:
                out.append(error)
        return out

    def _advance_stream(self, attempt: _Attempt) -> None:
        got: Any = None
        try:
            ref = next(attempt.waitable)
            got = None if attempt.stage == 2 else _ray.get(ref)
        except (StopIteration, _ray.exceptions.RayError) as error:
            self._settle(attempt, self._lost(attempt, error), None)
            return
        if attempt.stage == 0:
            attempt.started = time.monotonic()
            start, worker, pid = got
            attempt.meta = (start, start, worker, pid, "")
        elif attempt.stage == 1:
            attempt.meta = got
            if got[4]:  # fn raised
                self._settle(attempt, got, None)
                return
        else:
            assert attempt.meta is not None
            self._settle(attempt, attempt.meta, ref)
            return
        attempt.stage += 1
        self._waiting[attempt.waitable] = attempt

    def _lost(self, attempt: _Attempt, error: BaseException) -> Meta:
        """The meta of an attempt Ray could not finish (its worker died, it was cancelled)."""
        start, worker = (attempt.meta[0], attempt.meta[2]) if attempt.meta else (float("nan"), "")
        text = f"ray could not run the task: {type(error).__name__}: {error}"
        return (start, time.time(), worker, 0, text)

    def _attempt_report(self, attempt: _Attempt, meta: Meta, outcome: str) -> AttemptReport:
        start, end, worker, _, error = meta
        origin = attempt.run.submitted_wall
        started = None if start != start else start - origin  # NaN: never announced a start
        return AttemptReport(attempt.number, worker, False, outcome, started, end - origin, error)

    def _settle(self, attempt: _Attempt, meta: Meta, value: Any) -> None:
        """An attempt ended: with ``value`` (maybe an ObjectRef), or with ``meta``'s error."""
        run, index = attempt.run, attempt.index
        run.live.discard(attempt)
        if run.state != "running":
            return
        if meta[3]:
            run.pids[meta[2]] = meta[3]
        if meta[4]:
            report = self._attempt_report(attempt, meta, "failed")
            self._failed(run, index, report)
            return
        report = self._attempt_report(attempt, meta, "finished")
        run.history[index].append(report)
        run.winners[index] = report
        run.done += 1
        self._touched.add(run.job_id)
        if run.job.combine is None:
            run.values[index] = value
        else:
            self._place(run, index, value)
        if run.done == len(run.partitions):
            self._complete(run)

    def _failed(self, run: _Run, index: int, report: AttemptReport) -> None:
        run.history[index].append(report)
        run.failures[index] += 1
        failures = run.failures[index]
        if failures > run.job.retries:
            self._fail(run, f"{run.job_id}/{index}", failures, report.error)
            return
        delay = min(_MAX_BACKOFF, run.job.backoff * 2 ** (failures - 1))
        heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._ticket), run, index))

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, run, index = heapq.heappop(self._delayed)
            if run.state == "running":
                run.pending.appendleft(index)

    def _check_timeouts(self, now: float) -> None:
        expired = [
            a
            for a in self._waiting.values()
            if a.started is not None
            and a.run.job.timeout is not None
            and now - a.started > a.run.job.timeout
        ]
        for attempt in expired:
            run = attempt.run
            del self._waiting[attempt.waitable]
            with contextlib.suppress(Exception):
                _ray.cancel(attempt.waitable, force=True)
            assert attempt.meta is not None
            start, _, worker, pid, _ = attempt.meta
            error = (
                f"task {run.job_id}/{attempt.index} attempt {attempt.number} timed out after "
                f"{run.job.timeout}s on worker {worker}"
            )
            self._settle(attempt, (start, time.time(), worker, pid, error), None)

    # -- aggregation and the end of a job --

    def _place(self, run: _Run, index: int, ref: Any) -> None:
        """Put a map result into the combine tree; pair it with its neighbour if that is in."""
        level, sizes = 0, run.sizes
        while sizes[level] > 1:
            if index % 2 == 0 and index == sizes[level] - 1:  # the odd one out moves up
                level, index = level + 1, index // 2
                continue
            partner = run.levels[level].pop(index ^ 1, None)
            if partner is None:
                run.levels[level][index] = ref
                return
            left, right = (ref, partner) if index % 2 == 0 else (partner, ref)
            ref = _remote_pair.options(**run.options).remote(run.combine_ref, left, right)
            level, index = level + 1, index // 2
        run.final = ref

    def _complete(self, run: _Run) -> None:
        try:
            if run.job.combine is not None:
                value = _ray.get(run.final)
            elif run.mode == "streamed":
                value = _ray.get(run.values)
            else:
                value = run.values
        except _ray.exceptions.RayError as error:
            self._fail(run, "combine", 1, f"ray could not finish the job: {error}")
            return
        if isinstance(value, _CombineFailed):
            self._fail(run, "combine", 1, value.traceback)
            return
        run.state = "done"
        run.finished_at = time.monotonic()
        run.result = JobResult(value, self._job_report(run))
        self._end(run)

    def _fail(self, run: _Run, task_id: str, attempts: int, error: str) -> None:
        run.state = "failed"
        run.finished_at = time.monotonic()
        run.error = JobFailedError(run.job.name, task_id, attempts, error)
        self._touched.add(run.job_id)
        self._cancel_live(run)
        self._end(run)

    def _cancel_live(self, run: _Run) -> None:
        for attempt in list(run.live):
            self._waiting.pop(attempt.waitable, None)
            with contextlib.suppress(Exception):
                _ray.cancel(attempt.waitable, force=True)
        run.live.clear()

    def _end(self, run: _Run) -> None:
        """Forget the job's Ray objects (so Ray can free them) and its place in the queue."""
        run.pending.clear()
        run.values, run.levels, run.final = [], [], None
        run.fn_ref = run.combine_ref = run.remote = None
        if run in self._active:
            self._active.remove(run)

    def _job_report(self, run: _Run) -> JobReport:
        tasks = []
        for index, history in enumerate(run.history):
            won = run.winners[index]
            start = None if won is None else won.started_at
            tasks.append(
                TaskReport(
                    task_id=f"{run.job_id}/{index}",
                    index=index,
                    worker_id="" if won is None else won.worker_id,
                    attempts=len(history),
                    speculative_copies=0,
                    won_by_speculative=False,
                    started_at=start,
                    duration=None
                    if won is None or start is None or won.ended_at is None
                    else won.ended_at - start,
                    history=tuple(history),
                )
            )
        finished = run.finished_at if run.finished_at is not None else time.monotonic()
        return JobReport(
            job_id=run.job_id,
            name=run.job.name,
            executor=self.name,
            state=run.state,
            wall_time=finished - run.submitted_at,
            tasks=tuple(tasks),
            workers={t.worker_id: run.pids.get(t.worker_id) for t in tasks if t.worker_id},
        )

    def _report(self, progress: Progress | None) -> None:
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        report_progress(progress, touched, self._runs)
