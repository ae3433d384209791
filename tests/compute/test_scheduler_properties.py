"""The pure scheduler under random event sequences (Hypothesis, stateful).

A model driver plays the executor's part: it keeps the attempts the scheduler told it to
run (``RunTask``) until they are cancelled, end or their worker is lost, and sends back
whatever a real executor might -- starts, results, failures, repeated and stale reports,
workers joining and dying, time passing, cancels, forgetting ended jobs. The scheduler
validates its invariants after every event (``validate=True``); on top, the driver checks
that the instructions agree with the state: the attempts it runs are exactly the live ones,
no attempt goes to an unknown worker, every job ends exactly once, a job only ends when
none of its attempts is still running, and a Tick leaves no timer that was due.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.compute.scheduler import (
    CancelJob,
    CancelTask,
    ForgetJob,
    Instruction,
    JobDone,
    JobFailed,
    JobSubmitted,
    RunTask,
    Scheduler,
    SchedulerConfig,
    TaskFailed,
    TaskFinished,
    TaskSpec,
    TaskStarted,
    Tick,
    WorkerJoined,
    WorkerLost,
)

Attempt = tuple[str, int]  # (task id, attempt number)


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = SchedulerConfig(
            prefetch=1,
            prefetch_under=0.5,
            straggler_min_finished=1,
            straggler_min_runtime=0.2,
            max_backoff=2.0,
        )
        self.s = Scheduler(config, validate=True)
        self.now = 0.0
        self.workers: dict[str, int] = {}  # joined worker -> its number of slots
        self.joined = 0
        self.jobs = 0
        self.running_jobs: set[str] = set()
        self.ended_jobs: set[str] = set()
        self.live: dict[Attempt, str] = {}  # attempt -> worker, as the driver knows it
        self.started: set[Attempt] = set()

    # -- the driver's side --

    def feed(self, event: object) -> None:
        for instruction in self.s.handle(event):  # type: ignore[arg-type]
            self.carry_out(instruction)

    def carry_out(self, instruction: Instruction) -> None:
        if isinstance(instruction, RunTask):
            key = (instruction.task_id, instruction.attempt)
            assert instruction.worker_id in self.workers, instruction
            assert key not in self.live, f"{key} was already running"
            self.live[key] = instruction.worker_id
        elif isinstance(instruction, CancelTask):
            key = (instruction.task_id, instruction.attempt)
            assert self.live.pop(key, None) == instruction.worker_id, instruction
            self.started.discard(key)
        else:
            assert isinstance(instruction, JobDone | JobFailed)
            job_id = instruction.job_id
            assert job_id in self.running_jobs, f"job {job_id} ended twice"
            assert not [k for k in self.live if k[0].startswith(f"{job_id}/")]
            self.running_jobs.discard(job_id)
            self.ended_jobs.add(job_id)

    def pick(self, keys: object, index: int) -> Attempt:
        ordered = sorted(keys)  # type: ignore[call-overload]
        return ordered[index % len(ordered)]  # type: ignore[no-any-return]

    def report_end(self, key: Attempt, ok: bool) -> None:
        worker = self.live.pop(key)
        self.started.discard(key)
        if ok:
            self.feed(TaskFinished(key[0], key[1], worker, self.now))
        else:
            self.feed(TaskFailed(key[0], key[1], worker, f"boom {key}", self.now))

    # -- rules --

    @rule(slots=st.integers(1, 3), cpu=st.integers(1, 3), gpu=st.booleans())
    def join(self, slots: int, cpu: int, gpu: bool) -> None:
        self.joined += 1
        worker = f"w{self.joined}"
        self.workers[worker] = slots
        resources = {"cpu": cpu, "gpu": 1} if gpu else {"cpu": cpu}
        self.feed(WorkerJoined(worker, resources, slots))

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def lose(self, index: int) -> None:
        worker = sorted(self.workers)[index % len(self.workers)]
        del self.workers[worker]
        for key in [k for k, w in self.live.items() if w == worker]:
            del self.live[key]  # the scheduler reschedules them; their reports never come
            self.started.discard(key)
        self.feed(WorkerLost(worker))

    @rule(
        count=st.integers(1, 5),
        retries=st.integers(0, 2),
        backoff=st.sampled_from([0.0, 0.3]),
        timeout=st.sampled_from([None, 0.5, 2.0]),
        need=st.sampled_from([{"cpu": 1}, {"cpu": 2}, {"cpu": 1, "gpu": 1}, {}]),
        priority=st.integers(0, 2),
    )
    def submit(
        self,
        count: int,
        retries: int,
        backoff: float,
        timeout: float | None,
        need: dict[str, float],
        priority: int,
    ) -> None:
        self.jobs += 1
        job_id = f"j{self.jobs}"
        tasks = tuple(
            TaskSpec(f"{job_id}/{i}", need, retries, backoff, timeout) for i in range(count)
        )
        self.running_jobs.add(job_id)
        self.feed(JobSubmitted(job_id, tasks, priority, self.now))

    @precondition(lambda self: len(self.live) > len(self.started))
    @rule(index=st.integers(0, 100))
    def start(self, index: int) -> None:
        key = self.pick(set(self.live) - self.started, index)
        self.started.add(key)
        self.feed(TaskStarted(key[0], key[1], self.live[key], self.now))

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 100))
    def finish(self, index: int) -> None:
        self.report_end(self.pick(self.live, index), ok=True)

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 100))
    def fail(self, index: int) -> None:
        self.report_end(self.pick(self.live, index), ok=False)

    @precondition(lambda self: self.started)
    @rule(index=st.integers(0, 100))
    def repeat_start(self, index: int) -> None:
        key = self.pick(self.started, index)
        self.feed(TaskStarted(key[0], key[1], self.live[key], self.now))

    @rule(job=st.integers(1, 20), task=st.integers(0, 4), attempt=st.integers(1, 4))
    def stale_report(self, job: int, task: int, attempt: int) -> None:
        key = (f"j{job}/{task}", attempt)
        if key in self.live:
            return  # not stale: the other rules report live attempts
        before = self.s.workers()
        self.feed(TaskFinished(key[0], attempt, "w1", self.now))
        assert self.s.workers() == before

    @rule(dt=st.sampled_from([0.05, 0.3, 1.0, 2.5]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.feed(Tick(self.now))
        wake = self.s.next_wakeup()
        assert wake is None or wake > self.now, "a Tick left a timer that was due"

    @precondition(lambda self: self.running_jobs)
    @rule(index=st.integers(0, 100))
    def cancel(self, index: int) -> None:
        job_id = sorted(self.running_jobs)[index % len(self.running_jobs)]
        self.feed(CancelJob(job_id, "cancelled"))

    @precondition(lambda self: self.ended_jobs)
    @rule(index=st.integers(0, 100))
    def forget(self, index: int) -> None:
        job_id = sorted(self.ended_jobs)[index % len(self.ended_jobs)]
        self.ended_jobs.discard(job_id)
        self.feed(ForgetJob(job_id))

    # -- what must hold between events --

    @invariant()
    def the_driver_and_the_scheduler_agree(self) -> None:
        for key in self.live:
            assert self.s.is_live(*key), key
        per_worker = {w: 0 for w in self.workers}
        for worker in self.live.values():
            per_worker[worker] += 1
        assert self.s.workers() == per_worker


SchedulerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_scheduler_under_random_events = SchedulerMachine.TestCase
