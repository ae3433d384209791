"""What the SDK benchmarks share: an open-loop load generator, its summary, the processes.

* `open_loop`: requests at a fixed rate on a schedule fixed in advance. Request i is due
  at ``start + i / rate`` and is launched as its own task at that time whether or not
  earlier ones have answered, so a slow answer never delays the next request. Latency is
  measured from the *due* time, not from when the task got to run: a client that falls
  behind its schedule shows it as latency instead of quietly sending less (the
  coordinated omission that closed-loop generators suffer, and exactly what hides a
  stuck backend). Each sample also keeps the lag (due -> sent), so a row whose client
  could not keep up says so. Timer resolution is the event loop's (1 ms on uvloop):
  requests leave in bursts of at most a millisecond's worth, measured from the
  schedule all the same.
* `summarize`: success rate (an answer the caller accepted within the deadline,
  counted from the due time), nearest-rank percentiles, achieved rate, lag.
* `make_transport`: the httpx transport a benchmark's clients send with -- httpx's own
  pool, or aiohttp's through httpx-aiohttp (pip-installed into this interpreter's
  environment on first use, as bench.harness installs etcd and wrk: a benchmark tool,
  not a dependency of shoal);
* `BackendsProcess` (bench/sdk_backends.py under taskset), `control_plane` (a `shoal
  server` under taskset, from bench.harness), `pin_self`, `split_cpus`: the client on
  one core, everything it calls on the other(s), when the machine has two.

Nothing here decides what a benchmark measures or prints its goals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ShoalMember, taskset
from bench.sdk_backends import READY
from shoal.testing import wait_for

OK = "ok"


@dataclass(frozen=True, slots=True)
class Sample:
    due: float  # perf_counter seconds at which the schedule wanted it sent
    sent: float  # when its task started
    end: float
    outcome: str  # OK, or what went wrong (an exception's class name, a status)

    @property
    def latency(self) -> float:
        return self.end - self.due


GAVE_UP = "gave up"


async def open_loop(
    call: Callable[[], Awaitable[str]],
    rate: float,
    duration: float,
    start: float,
    give_up: float = 30.0,
) -> list[Sample]:
    """Run `call` `rate` times a second for `duration` seconds from `start` (a
    perf_counter time, which the caller may also use to schedule events); every call's
    sample, in schedule order, once all have ended. A call still running `give_up`
    seconds after it was sent is cancelled and counted as GAVE_UP, so a client that
    has fallen hopelessly behind still ends the run in bounded time."""
    interval = 1.0 / rate
    count = round(rate * duration)
    samples: list[Sample | None] = [None] * count
    pending: set[asyncio.Task[None]] = set()
    clock = time.perf_counter

    async def one(i: int, due: float) -> None:
        sent = clock()
        try:
            async with asyncio.timeout(give_up):
                outcome = await call()
        except TimeoutError:
            outcome = GAVE_UP
        except Exception as error:  # the row counts failures; it must not stop the run
            outcome = type(error).__name__
        samples[i] = Sample(due, sent, clock(), outcome)

    i = 0
    while i < count:
        now = clock()
        while i < count and start + i * interval <= now:
            task = asyncio.create_task(one(i, start + i * interval))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, start + i * interval - clock()))
    while pending:
        await asyncio.gather(*list(pending))
    return [s for s in samples if s is not None]


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in [0, 1])."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(q * len(ordered) + 0.999999)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    ok: int  # OK within the deadline
    late: int  # OK, but after the deadline (counted as failures)
    failures: dict[str, int]
    latency: list[float]  # every request's, ascending (failures at the time they took)
    service: list[float]  # sent -> end, ascending
    lag: list[float]  # due -> sent, ascending
    rate: float  # requests sent per second over the run

    @property
    def success(self) -> float:
        return self.ok / self.count if self.count else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latency, q)


def summarize(samples: list[Sample], deadline: float | None = None) -> Summary:
    failures: dict[str, int] = {}
    ok = late = 0
    for s in samples:
        if s.outcome != OK:
            failures[s.outcome] = failures.get(s.outcome, 0) + 1
        elif deadline is not None and s.latency > deadline:
            late += 1
        else:
            ok += 1
    span = samples[-1].sent - samples[0].sent if len(samples) > 1 else 0.0
    return Summary(
        count=len(samples),
        ok=ok,
        late=late,
        failures=failures,
        latency=sorted(s.latency for s in samples),
        service=sorted(s.end - s.sent for s in samples),
        lag=sorted(s.sent - s.due for s in samples),
        rate=(len(samples) - 1) / span if span > 0 else 0.0,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --------------------------------------------------------------------------- transports

TRANSPORTS = ("aiohttp", "httpx")
# The SDK's own per-client connection limits (shoal/service/client.py).
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)


def make_transport(name: str) -> httpx.AsyncBaseTransport | None:
    """A fresh transport called `name` (None: httpx's own pool, what the SDK defaults to)."""
    if name == "httpx":
        return None
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        print("installing httpx-aiohttp (a benchmark tool) with pip", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "httpx-aiohttp"], check=True, timeout=600
        )
        from httpx_aiohttp import AiohttpTransport
    transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=LIMITS)
    return transport


# --------------------------------------------------------------------------- processes


def split_cpus(pin: bool) -> tuple[str | None, int | None]:
    """(cpus for the servers, the cpu for this client process), or (None, None)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return ",".join(str(c) for c in cpus[:-1]), cpus[-1]


def pin_self(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def control_plane(root: Path, cpus: str | None) -> Iterator[ShoalMember]:
    """A single-member `shoal server`, ready, killed on exit."""
    member = ShoalMember(name="n1", data_dir=root / "n1" / "data", cpus=cpus)
    member.start()
    try:
        member.wait_ready()
        yield member
    finally:
        member.kill()


class BackendsProcess:
    """bench/sdk_backends.py as a process: started, registered, then killed on exit."""

    def __init__(
        self,
        endpoints: str,
        service: str,
        *,
        count: int,
        latency: str,
        cpus: str | None,
        log: Path,
        seed: int = 1,
    ) -> None:
        command = [
            *taskset(cpus), sys.executable, "-m", "bench.sdk_backends",
            "--endpoints", endpoints, "--service", service, "--count", str(count),
            "--latency", latency, "--seed", str(seed),
        ]  # fmt: skip
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
            )
        self.ports: list[int] = []
        self.ids: list[str] = []

    def wait_ready(self, timeout: float = 60.0) -> BackendsProcess:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"backends exited {self.proc.returncode}: see {self.log}")
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    continue
                line = self.proc.stdout.readline()
                if line.startswith(READY):
                    ready: dict[str, Any] = json.loads(line.removeprefix(READY))
                    self.ports, self.ids = ready["ports"], ready["ids"]
                    return self
        raise TimeoutError(f"backends not registered after {timeout}s: see {self.log}")

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Served and in-flight counts per port. Retried for up to 30 s: on a machine
        shared with other work a loaded backend can take seconds to accept, and asking
        twice (even with `reset`) is harmless."""
        url = self.url(0) + "/_bench/stats" + ("?reset=1" if reset else "")

        def get() -> dict[str, Any]:
            r = httpx.get(url, timeout=5)
            r.raise_for_status()
            body: dict[str, Any] = r.json()
            return body

        return wait_for(get, 30, 0.2, "the backends' stats")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> BackendsProcess:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def run_loop(main: Awaitable[Any]) -> Any:
    """Run `main` on uvloop when it is installed (what uvicorn serves FastAPI apps on)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
