"""The pure scheduler, driven by direct ``handle`` calls: one test (or more) per rule.

Every scheduler here is made by ``checked``: it validates its invariants after every
event (``Scheduler(validate=True)``), so each test also checks that no event leaves the
state inconsistent. The last tests corrupt the state by hand to prove the checks fail.
"""

from __future__ import annotations

import pytest

from shoal.compute.errors import ComputeError
from shoal.compute.scheduler import (
    AttemptOutcome,
    CancelJob,
    CancelTask,
    ForgetJob,
    Instruction,
    JobDone,
    JobFailed,
    JobState,
    JobSubmitted,
    RunTask,
    Scheduler,
    SchedulerConfig,
    TaskFailed,
    TaskFinished,
    TaskSpec,
    TaskStarted,
    TaskState,
    Tick,
    WorkerJoined,
    WorkerLost,
    replay,
)

CPU = {"cpu": 1}


def checked(config: SchedulerConfig | None = None, *, record: bool = False) -> Scheduler:
    """A scheduler that runs ``validate()`` after every event it handles."""
    return Scheduler(config, record=record, validate=True)


def specs(job: str, n: int, **options: object) -> tuple[TaskSpec, ...]:
    return tuple(TaskSpec(f"{job}/{i}", **options) for i in range(n))  # type: ignore[arg-type]


def runs(out: list[Instruction]) -> list[tuple[str, int, str]]:
    return [(i.task_id, i.attempt, i.worker_id) for i in out if isinstance(i, RunTask)]


def start_and_finish(s: Scheduler, out: list[Instruction], at: float) -> list[Instruction]:
    """Start every RunTask in ``out`` at ``at`` and finish them at ``at + 1``."""
    more: list[Instruction] = []
    for task_id, attempt, worker in runs(out):
        s.handle(TaskStarted(task_id, attempt, worker, at))
    for task_id, attempt, worker in runs(out):
        more += s.handle(TaskFinished(task_id, attempt, worker, at + 1))
    return more


# --- order: priority, FIFO, aging --------------------------------------------------------


def test_higher_priority_first_then_fifo_within_a_priority() -> None:
    s = checked()
    s.handle(JobSubmitted("a", specs("a", 1), priority=0, submitted_at=0))
    s.handle(JobSubmitted("b", specs("b", 1), priority=5, submitted_at=0))
    s.handle(JobSubmitted("c", specs("c", 1), priority=5, submitted_at=0))
    out = s.handle(WorkerJoined("w", CPU))
    assert runs(out) == [("b/0", 1, "w")]
    out = s.handle(TaskFinished("b/0", 1, "w", 1))
    assert runs(out) == [("c/0", 1, "w")]  # same priority: submitted first, served first
    out = s.handle(TaskFinished("c/0", 1, "w", 2))
    assert runs(out) == [("a/0", 1, "w")]


@pytest.mark.parametrize(("aging", "first"), [(0.0, "new"), (0.1, "old")])
def test_aging_lets_a_long_waiting_low_priority_job_overtake(aging: float, first: str) -> None:
    s = checked(SchedulerConfig(aging=aging))
    s.handle(JobSubmitted("old", specs("old", 1), priority=0, submitted_at=0))
    # 100 s later, a job 5 levels higher arrives; with aging 0.1/s the old one has gained 10.
    s.handle(JobSubmitted("new", specs("new", 1), priority=5, submitted_at=100))
    out = s.handle(WorkerJoined("w", CPU))
    assert runs(out) == [(f"{first}/0", 1, "w")]


def test_a_job_that_fits_nowhere_does_not_block_lower_priorities() -> None:
    s = checked()
    s.handle(JobSubmitted("big", specs("big", 1, resources={"cpu": 8}), priority=9))
    s.handle(JobSubmitted("small", specs("small", 1), priority=0))
    out = s.handle(WorkerJoined("w", {"cpu": 2}))
    assert runs(out) == [("small/0", 1, "w")]
    assert not s.can_ever_place(TaskSpec("x", {"cpu": 8}))
    out = s.handle(WorkerJoined("huge", {"cpu": 16}))
    assert runs(out) == [("big/0", 1, "huge")]


# --- placement -----------------------------------------------------------------------------


def test_tasks_go_only_where_resources_fit() -> None:
    s = checked()
    s.handle(WorkerJoined("plain", {"cpu": 4}, slots=4))
    s.handle(WorkerJoined("gpu", {"cpu": 1, "gpu": 1}))
    out = s.handle(JobSubmitted("j", specs("j", 2, resources={"gpu": 1})))
    assert runs(out) == [("j/0", 1, "gpu")]  # the second waits: one gpu only
    out = s.handle(TaskFinished("j/0", 1, "gpu", 1))
    assert runs(out) == [("j/1", 2 - 1, "gpu")]


def test_resources_are_summed_over_the_slots_of_a_worker() -> None:
    s = checked()
    s.handle(WorkerJoined("w", {"cpu": 2, "memory": 1000}, slots=8))
    out = s.handle(JobSubmitted("j", specs("j", 5, resources={"cpu": 1, "memory": 100})))
    assert len(runs(out)) == 2  # cpu 2 allows two at once, not eight
    out = s.handle(TaskFinished("j/0", 1, "w", 1))
    assert runs(out) == [("j/2", 1, "w")]


def test_least_loaded_first_ties_by_join_order() -> None:
    s = checked()
    s.handle(WorkerJoined("w1", {"cpu": 2}, slots=2))
    s.handle(WorkerJoined("w2", {"cpu": 2}, slots=2))
    out = s.handle(JobSubmitted("j", specs("j", 3)))
    assert [w for _, _, w in runs(out)] == ["w1", "w2", "w1"]


def test_locality_hint_is_honoured_when_that_worker_fits() -> None:
    s = checked()
    s.handle(WorkerJoined("w1", CPU))
    s.handle(WorkerJoined("w2", CPU))
    tasks = (TaskSpec("j/0", locality="w2"), TaskSpec("j/1", locality="w2"))
    out = s.handle(JobSubmitted("j", tasks))
    # j/0 where its data is; j/1 would prefer w2 too, but w2 is full, so it goes to w1.
    assert runs(out) == [("j/0", 1, "w2"), ("j/1", 1, "w1")]


def test_prefetch_queues_short_tasks_only() -> None:
    s = checked(SchedulerConfig(prefetch=2, prefetch_under=0.01))
    s.handle(WorkerJoined("w", CPU))
    out = s.handle(JobSubmitted("j", specs("j", 10)))
    assert len(runs(out)) == 1  # nothing known about the job yet: no queueing
    s.handle(TaskStarted("j/0", 1, "w", 1.0))
    out = s.handle(TaskFinished("j/0", 1, "w", 1.001))  # short: queue up to 2 more
    assert [t for t, _, _ in runs(out)] == ["j/1", "j/2", "j/3"]
    assert s.workers() == {"w": 3}

    slow = checked(SchedulerConfig(prefetch=2, prefetch_under=0.01))
    slow.handle(WorkerJoined("w", CPU))
    slow.handle(JobSubmitted("j", specs("j", 10)))
    slow.handle(TaskStarted("j/0", 1, "w", 1.0))
    out = slow.handle(TaskFinished("j/0", 1, "w", 2.0))  # long: one at a time
    assert [t for t, _, _ in runs(out)] == ["j/1"]


# --- retries and failure -------------------------------------------------------------------


def test_failed_task_is_retried_with_exponential_backoff_then_the_job_fails() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 1, retries=2, backoff=0.5), submitted_at=0))
    s.handle(TaskStarted("j/0", 1, "w", 10.0))
    out = s.handle(TaskFailed("j/0", 1, "w", "Traceback: boom 1", 10.0))
    assert out == []
    assert s.next_wakeup() == pytest.approx(10.5)
    assert s.handle(Tick(10.4)) == []
    assert runs(s.handle(Tick(10.5))) == [("j/0", 2, "w")]

    out = s.handle(TaskFailed("j/0", 2, "w", "Traceback: boom 2", 20.0))
    assert out == [] and s.next_wakeup() == pytest.approx(21.0)  # 0.5 * 2
    assert runs(s.handle(Tick(21.0))) == [("j/0", 3, "w")]

    out = s.handle(TaskFailed("j/0", 3, "w", "Traceback: boom 3", 30.0))
    assert out == [JobFailed("j", "j/0", "Traceback: boom 3", 3)]
    assert s.job_state("j") == "failed"
    assert [line.what for line in s.story("j/0")] == [
        "submitted",
        "run",
        "started",
        "failed",
        "retry",
        "run",
        "failed",
        "retry",
        "run",
        "failed",
    ]


def test_a_failing_job_cancels_its_other_running_attempts() -> None:
    s = checked()
    s.handle(WorkerJoined("w1", CPU))
    s.handle(WorkerJoined("w2", CPU))
    s.handle(JobSubmitted("j", specs("j", 2, retries=0)))
    s.handle(TaskStarted("j/1", 1, "w2", 0))
    out = s.handle(TaskFailed("j/0", 1, "w1", "boom", 1))
    assert out == [
        CancelTask("j/1", 1, "w2", True, "job failed"),
        JobFailed("j", "j/0", "boom", 1),
    ]
    assert s.handle(TaskFinished("j/1", 1, "w2", 2)) == []  # stale


def test_cancel_job_from_outside() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 3)))
    out = s.handle(CancelJob("j", "combine raised"))
    assert out == [
        CancelTask("j/0", 1, "w", False, "job failed"),
        JobFailed("j", "", "combine raised"),
    ]


def test_timeout_cancels_the_attempt_and_counts_as_a_failure() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 1, timeout=1.0, backoff=0)))
    s.handle(TaskStarted("j/0", 1, "w", 0.0))
    assert s.handle(Tick(0.9)) == []
    out = s.handle(Tick(1.5))
    assert out[0] == CancelTask("j/0", 1, "w", True, "timeout")
    assert runs(out) == [("j/0", 2, "w")]  # backoff 0: retried at once
    assert "timed out after 1.0s" in s.attempts("j/0")[0].error


# --- worker loss ---------------------------------------------------------------------------


def test_lost_worker_has_its_tasks_rescheduled() -> None:
    s = checked()
    s.handle(WorkerJoined("w1", CPU))
    s.handle(JobSubmitted("j", specs("j", 2, retries=1)))
    s.handle(TaskStarted("j/0", 1, "w1", 0))
    s.handle(WorkerJoined("w2", CPU))  # j/1 goes here
    out = s.handle(WorkerLost("w1"))
    assert out == []  # nowhere to go yet: w2 is busy
    out = s.handle(TaskFinished("j/1", 1, "w2", 1))
    assert runs(out) == [("j/0", 2, "w2")]
    assert s.attempts("j/0")[0].outcome == "lost"
    # A second loss while it runs exceeds retries=1: the job fails, naming the worker.
    s.handle(TaskStarted("j/0", 2, "w2", 1))
    out = s.handle(WorkerLost("w2"))
    assert len(out) == 1 and isinstance(out[0], JobFailed)
    assert "worker w2 was lost" in out[0].error


def test_queued_attempts_on_a_lost_worker_do_not_count_as_failures() -> None:
    s = checked(SchedulerConfig(prefetch=3))
    s.handle(WorkerJoined("w1", CPU))
    s.handle(JobSubmitted("j", specs("j", 4, retries=0)))
    s.handle(TaskStarted("j/0", 1, "w1", 0))
    s.handle(TaskFinished("j/0", 1, "w1", 0.0001))  # short: j/1..j/3 now sit at w1
    assert s.workers() == {"w1": 3}
    s.handle(TaskStarted("j/1", 1, "w1", 0.0001))
    out = s.handle(WorkerLost("w1"))
    # j/1 had started and retries=0: the job fails; j/2, j/3 were only queued.
    assert out == [JobFailed("j", "j/1", "worker w1 was lost while running attempt 1", 1)]


# --- stragglers ----------------------------------------------------------------------------


def straggling(speculative: bool = True) -> tuple[Scheduler, list[Instruction]]:
    """Three workers; j/0 starts at 0 and never ends; four others take 1 s each."""
    s = checked(SchedulerConfig(straggler_min_runtime=0.0), record=True)
    for w in ("w1", "w2", "w3"):
        s.handle(WorkerJoined(w, CPU))
    out = s.handle(JobSubmitted("j", specs("j", 5, speculative=speculative)))
    assert runs(out) == [("j/0", 1, "w1"), ("j/1", 1, "w2"), ("j/2", 1, "w3")]
    s.handle(TaskStarted("j/0", 1, "w1", 0.0))
    out = start_and_finish(s, out[1:], 0.0)  # j/1, j/2 end at 1; j/3, j/4 start
    out = start_and_finish(s, out, 1.0)  # j/3, j/4 end at 2: median of 1 s, 4 done
    return s, out


def test_straggler_gets_one_speculative_copy_and_the_first_result_wins() -> None:
    s, _ = straggling()
    assert s.handle(Tick(2.9)) == []  # 2.9 s < 3 x median
    out = s.handle(Tick(3.1))
    assert out == [RunTask("j/0", 2, "w2", speculative=True)]
    assert s.handle(Tick(5.0)) == []  # one copy only
    s.handle(TaskStarted("j/0", 2, "w2", 3.1))
    out = s.handle(TaskFinished("j/0", 2, "w2", 3.2))
    assert out == [CancelTask("j/0", 1, "w1", True, "another attempt finished first"), JobDone("j")]
    assert s.handle(TaskFinished("j/0", 1, "w1", 9.0)) == []  # the loser's result: stale
    assert s.story("j/0")[-1].what == "ignored"
    assert [(v.attempt, v.outcome, v.speculative) for v in s.attempts("j/0")] == [
        (1, "cancelled", False),
        (2, "finished", True),
    ]


def test_original_may_still_win_the_race() -> None:
    s, _ = straggling()
    s.handle(Tick(3.1))
    out = s.handle(TaskFinished("j/0", 1, "w1", 3.15))
    assert out == [
        CancelTask("j/0", 2, "w2", False, "another attempt finished first"),
        JobDone("j"),
    ]


def test_no_speculation_when_the_job_opts_out() -> None:
    s, _ = straggling(speculative=False)
    assert s.handle(Tick(100.0)) == []


def test_straggler_copy_waits_for_a_free_slot_and_goes_before_other_tasks() -> None:
    s = checked(SchedulerConfig(straggler_min_runtime=0.0, straggler_min_finished=1))
    s.handle(WorkerJoined("w1", CPU))
    s.handle(WorkerJoined("w2", CPU))
    s.handle(JobSubmitted("j", specs("j", 4)))
    s.handle(TaskStarted("j/0", 1, "w1", 0.0))
    s.handle(TaskStarted("j/1", 1, "w2", 0.0))
    out = s.handle(TaskFinished("j/1", 1, "w2", 1.0))
    assert runs(out) == [("j/2", 1, "w2")]
    s.handle(TaskStarted("j/2", 1, "w2", 1.0))
    assert s.handle(Tick(3.5)) == []  # j/0 straggles, but w2 is busy
    out = s.handle(TaskFinished("j/2", 1, "w2", 3.6))
    assert runs(out) == [("j/0", 2, "w2")]  # the copy goes before j/3
    assert isinstance(out[0], RunTask) and out[0].speculative


# --- stimuli, stories, replay --------------------------------------------------------------


def test_stale_and_duplicate_reports_change_nothing() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 2)))
    assert s.handle(TaskFinished("j/0", 7, "w", 1)) == []  # an attempt that never was
    out = s.handle(TaskFinished("j/0", 1, "w", 1, stimulus_id="result-1"))
    assert runs(out) == [("j/1", 1, "w")]
    assert s.handle(TaskFinished("j/0", 1, "w", 1, stimulus_id="result-1-again")) == []
    assert s.story("j/0")[-1][:2] == ("result-1-again", "ignored")
    assert ("result-1", "finished") in [line[:2] for line in s.story("j/0")]


# --- forgetting ended jobs ------------------------------------------------------------------


def held(s: Scheduler) -> tuple[int, int]:
    """(jobs, tasks) the scheduler still holds."""
    return len(s._jobs), len(s._tasks)


def test_a_done_job_is_forgotten_and_late_reports_about_it_are_ignored() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    out = s.handle(JobSubmitted("j", specs("j", 2)))
    out = start_and_finish(s, out, 1.0)
    out = start_and_finish(s, out, 3.0)
    assert out == [JobDone("j")] and held(s) == (1, 2)
    assert s.handle(ForgetJob("j")) == []
    assert held(s) == (0, 0)
    assert not s.is_live("j/0", 1)
    with pytest.raises(ComputeError, match="unknown task"):
        s.story("j/0")
    # A late (stale) report of a task that is gone changes nothing, and raises nothing.
    assert s.handle(TaskStarted("j/1", 2, "w", 5.0)) == []
    assert s.handle(TaskFinished("j/1", 2, "w", 5.0)) == []
    assert s.handle(TaskFailed("j/0", 3, "w", "boom", 5.0)) == []
    assert s.workers() == {"w": 0} and held(s) == (0, 0)
    # The scheduler goes on as before; the id may even be used again.
    assert runs(s.handle(JobSubmitted("j", specs("j", 1)))) == [("j/0", 1, "w")]


def test_a_failed_job_is_forgotten_with_its_queued_and_waiting_tasks() -> None:
    s = checked(SchedulerConfig(prefetch=2, prefetch_under=10.0))
    s.handle(WorkerJoined("w1", CPU))
    s.handle(WorkerJoined("w2", CPU))
    out = s.handle(JobSubmitted("j", specs("j", 6, retries=1, backoff=1.0), submitted_at=0))
    start_and_finish(s, out, 0.0)  # two short tasks: later ones may be queued (prefetch)
    s.handle(TaskStarted("j/2", 1, "w1", 2.0))
    s.handle(TaskFailed("j/2", 1, "w1", "boom", 2.0))  # waits for its retry until 3.0
    assert s.task_state("j/2") == "waiting"
    out = s.handle(CancelJob("j", "stop"))
    assert out[-1] == JobFailed("j", "", "stop")
    cancelled = [(i.task_id, i.attempt, i.worker_id) for i in out if isinstance(i, CancelTask)]
    assert cancelled  # running and queued attempts
    s.handle(ForgetJob("j"))
    assert held(s) == (0, 0)
    for task_id, attempt, worker in cancelled:  # their results still come back
        assert s.handle(TaskFinished(task_id, attempt, worker, 2.5)) == []
    assert s.handle(Tick(4.0)) == []  # the forgotten retry falls due: skipped
    assert s.next_wakeup() is None
    assert s.workers() == {"w1": 0, "w2": 0}


def test_only_an_ended_job_can_be_forgotten() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 1)))
    with pytest.raises(ComputeError, match="still running"):
        s.handle(ForgetJob("j"))
    assert held(s) == (1, 1) and s.is_live("j/0", 1)
    with pytest.raises(ComputeError, match="unknown job"):
        s.handle(ForgetJob("nope"))


def test_replaying_the_log_gives_the_same_instructions() -> None:
    s, _ = straggling()
    s.handle(Tick(3.1))
    s.handle(TaskFinished("j/0", 2, "w2", 3.2))
    assert s.log is not None
    _, first = replay(s.log, s.config, validate=True)
    twin, second = replay(s.log, s.config, validate=True)
    assert first == second and any(isinstance(i, JobDone) for i in first)
    assert twin.story("j/0") == s.story("j/0")


def test_events_validate_themselves() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        JobSubmitted("j", ())
    with pytest.raises(ValueError, match="duplicate"):
        JobSubmitted("j", (TaskSpec("a"), TaskSpec("a")))
    with pytest.raises(ValueError, match="slots"):
        WorkerJoined("w", CPU, slots=0)
    with pytest.raises(ValueError, match="retries"):
        TaskSpec("a", retries=-1)
    with pytest.raises(ValueError, match="resource 'cpu'"):
        TaskSpec("a", {"cpu": -1})
    s = checked()
    s.handle(JobSubmitted("j", specs("j", 1)))
    with pytest.raises(ComputeError, match="already submitted"):
        s.handle(JobSubmitted("j", specs("k", 1)))


def test_states_are_typed_and_read_as_their_names() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 2)))
    assert s.task_state("j/0") is TaskState.ACTIVE and s.task_state("j/1") is TaskState.PENDING
    assert s.job_state("j") is JobState.RUNNING
    assert s.attempts("j/0")[0].outcome is AttemptOutcome.LIVE
    s.handle(TaskFinished("j/0", 1, "w", 1.0))
    s.handle(TaskFinished("j/1", 1, "w", 2.0))
    assert s.job_state("j") is JobState.DONE and s.job_state("j") == "done"
    assert [line.what for line in s.story("j/0")] == ["submitted", "run", "finished"]
    assert type(s.story("j/0")[-1].what) is str  # stories hold plain names


# --- timers: deadlines and forgotten retries ------------------------------------------------


def test_next_wakeup_names_the_earliest_timeout_and_the_first_start_counts() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 2, timeout=2.0, backoff=0)))
    assert s.next_wakeup() is None  # nothing has started: no deadline yet
    s.handle(TaskStarted("j/0", 1, "w", 1.0))
    assert s.next_wakeup() == pytest.approx(3.0)
    s.handle(TaskStarted("j/0", 1, "w", 2.5))  # a repeated report does not restart the clock
    assert s.next_wakeup() == pytest.approx(3.0)
    assert s.story("j/0")[-1][1:] == ("ignored", 1, "w", 2.5, "duplicate start")
    out = s.handle(Tick(3.0))
    assert out[0] == CancelTask("j/0", 1, "w", True, "timeout")
    assert runs(out) == [("j/0", 2, "w")]


def test_an_attempt_that_finished_in_time_causes_no_wakeup() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 1, timeout=2.0)))
    s.handle(TaskStarted("j/0", 1, "w", 1.0))
    s.handle(TaskFinished("j/0", 1, "w", 1.5))
    assert s.next_wakeup() is None


def test_a_forgotten_jobs_retry_does_not_release_a_task_that_reuses_its_id() -> None:
    s = checked()
    s.handle(WorkerJoined("w", CPU))
    s.handle(JobSubmitted("j", specs("j", 1, retries=1, backoff=5.0)))
    s.handle(TaskStarted("j/0", 1, "w", 0.0))
    s.handle(TaskFailed("j/0", 1, "w", "boom", 0.0))  # its retry falls due at 5
    s.handle(CancelJob("j", "stop"))
    s.handle(ForgetJob("j"))
    assert s.next_wakeup() is None
    s.handle(JobSubmitted("j", specs("j", 1, retries=1, backoff=100.0), submitted_at=1.0))
    s.handle(TaskStarted("j/0", 1, "w", 1.0))
    s.handle(TaskFailed("j/0", 1, "w", "boom", 1.0))  # this retry falls due at 101
    assert s.handle(Tick(6.0)) == []
    assert s.task_state("j/0") is TaskState.WAITING
    assert runs(s.handle(Tick(101.0))) == [("j/0", 2, "w")]


# --- validate() can fail ---------------------------------------------------------------------


def busy() -> Scheduler:
    """A scheduler (not self-validating) with running, queued, pending and waiting tasks."""
    s = Scheduler(SchedulerConfig(prefetch=1, prefetch_under=10.0))
    s.handle(WorkerJoined("w1", {"cpu": 2}, slots=2))
    s.handle(WorkerJoined("w2", CPU))
    out = s.handle(JobSubmitted("j", specs("j", 12, retries=2, backoff=5.0, timeout=60.0)))
    start_and_finish(s, out, 0.0)  # three done: queueing (prefetch) now applies
    s.handle(TaskStarted("j/3", 1, "w1", 1.0))
    s.handle(TaskFailed("j/3", 1, "w1", "boom", 1.5))  # j/3 waits for its retry
    for worker in s._workers.values():  # what occupies a slot starts (its timeout runs)
        for a in list(worker.running):
            s.handle(TaskStarted(a.task.spec.task_id, a.number, worker.worker_id, 2.0))
    s.validate()
    assert {s.task_state(f"j/{i}") for i in range(12)} == {
        TaskState.FINISHED,
        TaskState.ACTIVE,
        TaskState.PENDING,
        TaskState.WAITING,
    }
    assert any(w.queued for w in s._workers.values())
    return s


def first_active(s: Scheduler) -> str:
    return next(t for t, task in s._tasks.items() if task.state is TaskState.ACTIVE)


CORRUPTIONS: dict[str, tuple[object, str]] = {
    "a pending task dropped from its queue": (
        lambda s: s._jobs["j"].pending.pop(),
        r"pending task j/\d+ is in its job's queue 0 times",
    ),
    "a finished task put back in the queue": (
        lambda s: s._jobs["j"].pending.append(s._tasks["j/0"]),
        r"queue holds task j/0, which is finished",
    ),
    "resources counted twice": (
        lambda s: s._workers["w1"].used.__setitem__("cpu", 3),
        r"worker w1 counts 3 cpu in use, its running attempts take",
    ),
    "a live attempt taken off its worker": (
        lambda s: s._workers["w2"].running.clear(),
        r"is live on worker w2 but in neither its running nor its queued attempts",
    ),
    "a task in two states at once": (
        lambda s: setattr(s._tasks[first_active(s)], "state", TaskState.FINISHED),
        r"is finished but has live attempts",
    ),
    "a forgotten job's tasks left behind": (
        lambda s: s._jobs.pop("j"),
        r"belongs to no known job \(a forgotten job's leftover\)",
    ),
    "a waiting task without its timer": (
        lambda s: s._delayed.clear(),
        r"task j/3 waits for a retry but has 0 delayed entries",
    ),
    "a running attempt without its deadline": (
        lambda s: s._deadlines.clear(),
        r"runs with a timeout, but its deadline is None",
    ),
    "a running job missing from the order": (
        lambda s: s._order.clear(),
        r"the job order \[\] is not the running jobs \['j'\]",
    ),
    "a job counting the wrong number of unfinished tasks": (
        lambda s: setattr(s._jobs["j"], "remaining", 12),
        r"job j: remaining is 12, but 3 of 12 tasks finished",
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_validate_catches_a_corrupted_state(corruption: str) -> None:
    corrupt, message = CORRUPTIONS[corruption]
    s = busy()
    corrupt(s)  # type: ignore[operator]
    with pytest.raises(AssertionError, match=message):
        s.validate()
