"""The ``ray`` executor: the same ``Job`` on a Ray cluster, driven by the pure scheduler.

This is the one module that imports ``ray``; its errors become ours here. Ray places and
runs the attempts; the decisions are the pure scheduler's, as for the local and shoal
executors: the driver (the caller's thread, inside ``wait``) is the scheduler loop
(``_loop``) with Ray as its transport. The whole cluster is one scheduler worker
(``"ray"``) with ``max_in_flight`` slots and no resources of its own, and a task asks
the scheduler for none: Ray enforces resources, the scheduler bounds what is in flight.
So, exactly as on the other executors:

* Priority. The scheduler hands Ray at most ``max_in_flight`` attempts at a time, from
  the job of the best effective priority first (priority plus aging; retries ahead of
  untried tasks); what Ray already holds runs in Ray's order.
* Retries. Every attempt is one Ray task with Ray's own retries off, so each failure --
  an exception, a worker that died -- comes back as ``TaskFailed`` and the scheduler
  retries it after ``backoff * 2**(failures - 1)`` seconds (at most ``max_backoff``)
  until it has failed ``retries + 1`` times; then the job fails with the task's original
  traceback (formatted in the worker) and its other attempts are cancelled.
* Timeouts. A job with a ``timeout`` runs its tasks as streaming generators that announce
  their start (``TaskStarted``), so an attempt is timed from when it started running (not
  from when it was queued); the scheduler's deadline for it wakes the driver, which
  force-cancels the attempt -- its worker process killed -- and the scheduler counts a
  failure. That costs a round trip more per task, so jobs without a timeout use plain
  tasks (their start is reported with their result, as the worker measured it).
* No speculative copies: the cluster is a single scheduler worker, and a copy must go to
  another one. No locality either (Ray places).

Resources: a task asks Ray for the job's ``resources``: ``cpu`` -> ``num_cpus`` (0 if
absent), ``gpu`` -> ``num_gpus``, ``memory`` -> ``memory`` (bytes, Ray's unit), every
other label -> a custom resource. A job that no live node could ever fit is refused at
``submit`` with ``ExecutorError`` (Ray itself would wait for such a node for ever; pass
``check_resources=False`` on an autoscaling cluster, where one may yet appear).

Reports come from the scheduler's attempts, like the other executors' (a timed-out
attempt is ``cancelled``, with the timeout as its error), with the Ray worker that ran
each attempt (``node id/worker id``) as its worker.

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
import dataclasses
import importlib
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._loop import RunState, SchedulerLoop
from ._report import build_report
from .errors import ExecutorError, JobError
from .errors import JobFailed as JobFailedError
from .job import Job, JobReport, JobResult
from .scheduler import (
    CancelTask,
    JobSubmitted,
    RunTask,
    Scheduler,
    SchedulerConfig,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    WorkerJoined,
)

_MISSING: ImportError | None = None
try:
    # Typed as Any on purpose: ray's API is only partly annotated.
    _ray: Any = importlib.import_module("ray")
except ImportError as missing:  # pragma: no cover - exercised only without ray installed
    _MISSING = missing

__all__ = ["RayExecutor"]

_POOL = "ray"  # the scheduler worker that stands for the whole cluster
_TICK = 1.0  # the longest the driver waits without a Tick (timers wake it when due)

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
    mode: str  # joined | split | streamed (see the remote functions above)
    partitions: list[Any]
    task_ids: list[str]
    options: dict[str, Any]
    remote: Any  # the remote function of an attempt, the job's options applied
    fn_ref: Any
    combine_ref: Any
    submitted_at: float  # monotonic
    values: list[Any]  # no combiner: each partition's result (streamed: its ObjectRef)
    levels: list[dict[int, Any]]  # the combine tree's waiting slots, level by level
    sizes: list[int]  # the combine tree's width, level by level
    final: Any = None
    state: RunState = RunState.RUNNING
    scheduled: bool = True
    done: int = 0
    finished_at: float | None = None
    result: JobResult | None = None
    error: JobFailedError | None = None
    timing: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # index -> w, s, e
    ran_on: dict[tuple[int, int], str] = field(default_factory=dict)  # (index, attempt) -> worker
    pids: dict[str, int | None] = field(default_factory=dict)


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


class RayExecutor(SchedulerLoop[_Run]):
    """Run jobs on a Ray cluster.

    ``address`` is what ``ray.init`` takes. ``None`` runs on the Ray connection this
    process already has, else does what ``ray.init()`` does (joins a cluster that ``ray
    start`` recorded on this machine, or starts a local instance); ``"local"`` always
    starts a local instance; ``"auto"`` joins the cluster running on this machine;
    ``"ray://host:10001"`` connects through Ray Client. ``num_cpus`` (or ``workers``, as
    the other executors call it) sizes a local instance (default: every core);
    ``init_options`` go to ``ray.init`` (``include_dashboard`` defaults to False).
    ``max_in_flight`` bounds the attempts handed to Ray at a time (default: 16 per CPU of
    the cluster). ``config`` is the scheduler's (its ``prefetch`` does not apply: Ray
    queues). ``close()`` shuts Ray down only if this executor started it.
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
        config: SchedulerConfig | None = None,
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
        config = dataclasses.replace(config or SchedulerConfig(), prefetch=0)
        super().__init__(Scheduler(config), _TICK)
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
        self._waiting: dict[Any, _Attempt] = {}  # waitable -> its attempt
        self._live: dict[tuple[str, int], _Attempt] = {}  # (task id, attempt) -> attempt
        self._feed(WorkerJoined(_POOL, {}, max_in_flight, "join-ray"))

    # -- public API --

    def submit(self, job: Job) -> str:
        """Hand ``job`` to the scheduler; its first tasks go to Ray at once."""
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
        # Ray enforces the resources and places the attempts; the scheduler only orders
        # them and bounds how many are in flight (the pool worker has no resources).
        specs = tuple(
            dataclasses.replace(spec, resources={}, speculative=False, locality=None)
            for spec in job.task_specs(job_id, count)
        )
        sizes = _tree_sizes(count) if job.combine is not None else []
        run = _Run(
            job_id=job_id,
            job=job,
            mode=mode,
            partitions=partitions,
            task_ids=[spec.task_id for spec in specs],
            options=options,
            remote=remote,
            fn_ref=fn_ref,
            combine_ref=combine_ref,
            submitted_at=time.monotonic(),
            values=[None] * count if job.combine is None else [],
            levels=[{} for _ in sizes],
            sizes=sizes,
        )
        self._register(run)
        self._feed(JobSubmitted(job_id, specs, job.priority, run.submitted_at, f"submit-{job_id}"))
        return job_id

    # -- the transport --

    def _shut_down(self) -> None:
        """Cancel what is still running; shut Ray down if this executor started it."""
        for waitable in list(self._waiting):
            with contextlib.suppress(Exception):
                _ray.cancel(waitable, force=True)
        self._waiting.clear()
        self._live.clear()
        if self._owns_ray and _ray.is_initialized():
            _ray.shutdown()

    def _run_task(self, instruction: RunTask, run: _Run, index: int) -> None:
        attempt = _Attempt(run, index, instruction.attempt)
        handle = run.remote.remote(run.fn_ref, run.partitions[index])
        if run.mode == "split":
            attempt.value_ref, attempt.waitable = handle
        else:
            attempt.waitable = handle
        self._waiting[attempt.waitable] = attempt
        self._live[(instruction.task_id, instruction.attempt)] = attempt

    def _cancel_task(self, instruction: CancelTask, run: _Run, index: int) -> None:
        """Stop an attempt (it timed out, or its job failed): force-cancel its Ray task."""
        attempt = self._live.pop((instruction.task_id, instruction.attempt), None)
        if attempt is None:
            return
        self._waiting.pop(attempt.waitable, None)
        with contextlib.suppress(Exception):
            _ray.cancel(attempt.waitable, force=True)

    def _poll(self, timeout: float) -> None:
        waitables = list(self._waiting)
        if not waitables:
            # Nothing in flight: only a timer (a retry's backoff) or the tick can matter.
            time.sleep(timeout)
            return
        ready, _ = _ray.wait(waitables, num_returns=1, timeout=timeout)
        if ready and len(waitables) > 1:
            ready, _ = _ray.wait(waitables, num_returns=len(waitables), timeout=0)
        plain = []
        for waitable in ready:
            found = self._waiting.pop(waitable, None)
            if found is None:
                continue  # cancelled while an earlier one of this batch was handled
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
            run = attempt.run
            run.ran_on[(attempt.index, attempt.number)] = worker
            run.pids[worker] = pid
            task_id = run.task_ids[attempt.index]
            self._feed(TaskStarted(task_id, attempt.number, _POOL, attempt.started))
        elif attempt.stage == 1:
            attempt.meta = got
            if got[4]:  # fn raised
                self._settle(attempt, got, None)
                return
        else:
            assert attempt.meta is not None
            self._settle(attempt, attempt.meta, ref)
            return
        if (attempt.run.task_ids[attempt.index], attempt.number) in self._live:
            attempt.stage += 1
            self._waiting[attempt.waitable] = attempt  # else cancelled: its timeout passed

    def _lost(self, attempt: _Attempt, error: BaseException) -> Meta:
        """The meta of an attempt Ray could not finish (its worker died, it was cancelled)."""
        start, worker = (attempt.meta[0], attempt.meta[2]) if attempt.meta else (float("nan"), "")
        text = f"ray could not run the task: {type(error).__name__}: {error}"
        return (start, time.time(), worker, 0, text)

    def _settle(self, attempt: _Attempt, meta: Meta, value: Any) -> None:
        """An attempt ended: with ``value`` (maybe an ObjectRef), or with ``meta``'s error.

        Reported to the scheduler on the driver's clock: it ended now, and (unless it
        announced its start) started as long ago as the worker says it ran.
        """
        run, index, number = attempt.run, attempt.index, attempt.number
        task_id = run.task_ids[index]
        if self._live.pop((task_id, number), None) is not attempt:
            return  # cancelled meanwhile (its job failed while this batch was handled)
        start, end, worker, pid, error = meta
        now = time.monotonic()
        if worker:
            run.ran_on[(index, number)] = worker
            if pid:
                run.pids[worker] = pid
        began = attempt.started
        if began is None:
            ran = end - start
            began = now - ran if ran == ran and ran > 0 else now  # NaN: it never started
            self._feed(TaskStarted(task_id, number, _POOL, began))
        if error:
            self._feed(TaskFailed(task_id, number, _POOL, error, now))
            return
        run.timing[index] = (worker, began, now)
        run.done += 1
        self._touched.add(run.job_id)
        if run.job.combine is None:
            run.values[index] = value
        else:
            self._place(run, index, value)
        self._feed(TaskFinished(task_id, number, _POOL, now))

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

    def _job_done(self, run: _Run) -> None:
        """Every map result is in: fetch the final value (Ray ran the combine tree)."""
        try:
            if run.job.combine is not None:
                value = _ray.get(run.final)
            elif run.mode == "streamed":
                value = _ray.get(run.values)
            else:
                value = run.values
        except _ray.exceptions.RayError as error:
            self._combine_failed(run, f"ray could not finish the job: {error}")
            return
        if isinstance(value, _CombineFailed):
            self._combine_failed(run, value.traceback)
            return
        self._end_run(run, RunState.DONE)
        run.result = JobResult(value, self._job_report(run))

    def _combine_failed(self, run: _Run, error: str) -> None:
        run.error = JobFailedError(run.job.name, "combine", 1, error)
        self._end_run(run, RunState.FAILED)

    def _ended(self, run: _Run) -> None:
        """Forget the job's Ray objects, so Ray can free them."""
        run.values, run.levels, run.final = [], [], None
        run.fn_ref = run.combine_ref = run.remote = None

    def _result(self, run: _Run) -> JobResult:
        assert run.result is not None  # a run handed over has ended; without error, it has one
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
            pids=run.pids,
            ran_on=run.ran_on,
        )

    # -- submission --

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
