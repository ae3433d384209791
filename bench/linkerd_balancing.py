"""Linkerd's "Beyond Round Robin" experiment (2016) on shoal's SDK, side by side.

The post's setup, and how this run follows it:

* backends: Linkerd ran 11 replaying production latency (median 167 ms, sd 5 ms, no
  significant peaks); here 11 instances of bench/sdk_backends.py (one process, 11
  ports), each registered in a real `shoal server` over its own keep-alive stream, draw
  each request's latency from N(167 ms, 5 ms);
* client: one Finagle client at 1,000 qps over all 11; here one `AsyncServiceClient`
  fed by an open-loop schedule at `--rate` (1,000/s), latency counted from each
  request's due time (bench/open_loop.py);
* fault: one minute, and after 15 s one server's latency is fixed to 2 s for 30 s; the
  same here (`--quick`: 8 s, slow from 2 s to 6 s);
* success: answered within a 1 s caller timeout; the same here (within 1 s of the due
  time, and the SDK's overall timeout is 1 s);
* balancers: round robin, least loaded, peak EWMA; here `round_robin`, `least_request`
  (P2C on outstanding requests) and `peak_ewma` (P2C on peak-EWMA cost).

Each balancer runs twice: **as Linkerd** -- one attempt with the 1 s timeout, no
retries, no breaker, no ejection, so the balancer alone decides -- and **shoal
defaults** within the same 1 s budget: a per-attempt timeout of `--attempt-timeout`
(450 ms, so a retry on another instance fits), retries within the budget, per-instance
breakers and outlier ejection at their defaults. A warm-up at the same rate precedes each
row (connections open, first latency samples; the post's client was presumably warm
too) and is not counted. Between rows the benchmark waits until the backends have no
request in flight, and each row gets a fresh client (balancer, breakers and detector
start clean).

Where this departs: the backends are one process, not eleven machines (two cores; the
latency they add is a timer, not CPU); the client is Python on one core, so its own
queueing shows in the tail -- the `lag` column (due -> sent, p99) and the `sent/s`
column say whether it kept to the schedule; the post's latency came from a production
trace, ours from the normal distribution it describes.

    .venv/bin/python -m bench.linkerd_balancing           # 6 rows x ~65 s (~8 min)
    .venv/bin/python -m bench.linkerd_balancing --quick   # a smoke run (~1.5 min)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import terminate
from bench.open_loop import (
    OK,
    TRANSPORTS,
    BackendsProcess,
    Summary,
    control_plane,
    loop_name,
    make_transport,
    ms,
    open_loop,
    percentile,
    pin_self,
    run_loop,
    split_cpus,
    summarize,
)
from shoal.service import AsyncServiceClient, ClientPolicy
from shoal.testing import wait_for

SERVICE = "linkerd-bench"
BALANCERS = ("round_robin", "least_request", "peak_ewma")
MODES = ("linkerd", "shoal")
# What the post reports for its 1 s caller timeout, and how far each stayed fast.
LINKERD_SUCCESS = {"round_robin": "~95%", "least_request": "~99%", "peak_ewma": "~99.9%"}
LINKERD_FAST_UNTIL = {"round_robin": "p95", "least_request": "p99", "peak_ewma": "p99.9"}
GOAL_SUCCESS = 0.999  # peak EWMA with shoal's retries and ejection
BEHIND_LAG = 0.100  # seconds of p99 send lag past which a row says its client fell behind


@dataclass(frozen=True, slots=True)
class Row:
    mode: str
    balancer: str
    summary: Summary
    slow_share: float  # share of the run's requests the slow instance served
    cpu: float  # client process CPU seconds / wall seconds over the row
    load: float  # 1-minute load average at the end of the row
    took: float
    rate: float  # the schedule's

    @property
    def behind(self) -> bool:
        """Did the client fall behind its schedule (its own queueing is in the figures)?"""
        s = self.summary
        return s.rate < 0.95 * self.rate or percentile(s.lag, 0.99) > BEHIND_LAG


def policy_for(mode: str, balancer: str, args: argparse.Namespace) -> ClientPolicy:
    if mode == "linkerd":
        return ClientPolicy(
            balancer=balancer, max_attempts=1, breaker=None, outlier=None, timeout=args.timeout
        )
    return ClientPolicy(balancer=balancer, timeout=args.timeout, attempt_timeout=args.attempt)


async def wait_idle(backends: BackendsProcess) -> None:
    def idle() -> bool:
        return int(backends.stats()["in_flight"]) == 0

    await asyncio.to_thread(wait_for, idle, 30, 0.1, "the backends to finish every request")


async def run_row(
    args: argparse.Namespace, endpoints: str, backends: BackendsProcess, mode: str, balancer: str
) -> Row:
    await wait_idle(backends)
    began, cpu = time.perf_counter(), time.process_time()
    client = AsyncServiceClient(
        SERVICE,
        endpoints=endpoints,
        policy=policy_for(mode, balancer, args),
        transport=make_transport(args.transport),
    )
    control = httpx.AsyncClient(timeout=5)
    slow_port = backends.ports[-1]
    try:
        n = len(backends.ports)
        await asyncio.to_thread(
            wait_for, lambda: len(client.instances()) == n, 30, what=f"{n} instances in view"
        )

        async def call() -> str:
            response = await client.get("/work")
            return OK if response.status_code == 200 else f"status {response.status_code}"

        give_up = args.timeout + 4.0
        await open_loop(call, args.rate, args.warmup, time.perf_counter() + 0.05, give_up)
        await wait_idle(backends)
        await asyncio.to_thread(backends.stats, True)  # count the measured run only

        start = time.perf_counter() + 0.1

        async def make_slow() -> None:
            await asyncio.sleep(max(0.0, start + args.slow_at - time.perf_counter()))
            params = {"port": slow_port, "latency": args.slow_latency, "seconds": args.slow_for}
            for attempt in range(5):  # a loaded backend may be slow to accept; asking again
                try:  # only moves the window by the time lost
                    r = await control.post(f"{backends.url(0)}/_bench/slow", params=params)
                    r.raise_for_status()
                    return
                except httpx.HTTPError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.1)

        fault = asyncio.create_task(make_slow())
        samples = await open_loop(call, args.rate, args.duration, start, give_up)
        await fault
        stats = await asyncio.to_thread(backends.stats)
    finally:
        await control.aclose()
        await client.aclose()
    served = {int(p): i["served"] for p, i in stats["instances"].items()}
    total = sum(served.values())
    wall = time.perf_counter() - began
    return Row(
        mode=mode,
        balancer=balancer,
        summary=summarize(samples, deadline=args.timeout),
        slow_share=served.get(slow_port, 0) / total if total else 0.0,
        cpu=(time.process_time() - cpu) / wall,
        load=os.getloadavg()[0],
        took=wall,
        rate=args.rate,
    )


async def run_all(args: argparse.Namespace, endpoints: str, backends: BackendsProcess) -> list[Row]:
    rows = []
    for mode in args.modes:
        for balancer in args.balancers:
            row = await run_row(args, endpoints, backends, mode, balancer)
            s = row.summary
            print(
                f"  {mode:7} {balancer:13} success {s.success:8.3%}  p99 {ms(s.p(0.99))} ms"
                f"  sent {s.rate:.0f}/s  lag p99 {ms(percentile(s.lag, 0.99))} ms"
                f"  ({row.took:.0f} s, load {row.load:.2f})",
                flush=True,
            )
            rows.append(row)
    return rows


def table(rows: list[Row]) -> list[tuple[str, ...]]:
    head = "mode balancer success p50_ms p99_ms p99.9_ms max_ms to_slow failed sent/s"
    out = [(*(h.replace("_", " ") for h in head.split()), "lag p99 ms", "cpu", "Linkerd 2016")]
    for r in rows:
        s = r.summary
        behind = r.behind
        kinds = dict(s.failures)
        if s.late:
            kinds["late"] = s.late
        failed = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) or "-"
        reference = (
            f"{LINKERD_SUCCESS[r.balancer]}, fast to {LINKERD_FAST_UNTIL[r.balancer]}"
            if r.mode == "linkerd"
            else ""
        )
        out.append(
            (
                "as Linkerd" if r.mode == "linkerd" else "shoal defaults",
                r.balancer,
                f"{s.success:.3%}",
                ms(s.p(0.5)),
                ms(s.p(0.99)),
                ms(s.p(0.999)),
                ms(s.latency[-1]),
                f"{r.slow_share:.2%}",
                failed,
                f"{s.rate:.0f}" + (" !" if behind else ""),
                ms(percentile(s.lag, 0.99)),
                f"{r.cpu:.0%}",
                reference,
            )
        )
    return out


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 s per row")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--timeout", type=float, default=1.0, help="the caller's timeout, s")
    parser.add_argument(
        "--attempt-timeout", dest="attempt", type=float, default=0.45,
        help="shoal defaults rows: per-attempt timeout, s",
    )  # fmt: skip
    parser.add_argument("--balancers", default=",".join(BALANCERS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="aiohttp",
        help="what the SDK sends with: aiohttp's pool (httpx-aiohttp) or httpx's own",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and servers")
    parser.add_argument("--keep", type=Path, help="copy the processes' logs here")
    args = parser.parse_args(argv)
    args.balancers = [b for b in args.balancers.split(",") if b]
    args.modes = [m for m in args.modes.split(",") if m]
    for name in args.balancers:
        if name not in BALANCERS:
            parser.error(f"--balancers: {name!r} is not one of {', '.join(BALANCERS)}")
    for name in args.modes:
        if name not in MODES:
            parser.error(f"--modes: {name!r} is not one of {', '.join(MODES)}")
    if args.quick:
        args.duration, args.slow_at, args.slow_for, args.warmup = 8.0, 2.0, 4.0, 1.0
    else:
        args.duration, args.slow_at, args.slow_for, args.warmup = 60.0, 15.0, 30.0, 3.0
    args.slow_latency = 2.0
    signal.signal(signal.SIGTERM, terminate)

    server_cpus, client_cpu = split_cpus(not args.no_pin)
    root = Path(tempfile.mkdtemp(prefix="shoal-linkerd-"))
    began, load_before = time.monotonic(), os.getloadavg()
    print(
        f"linkerd_balancing: 11 instances (N(167 ms, 5 ms)), {args.rate:.0f} req/s open loop,"
        f" {args.duration:.0f} s per row, one instance at {args.slow_latency:.0f} s from"
        f" {args.slow_at:.0f} s for {args.slow_for:.0f} s; caller timeout {args.timeout:.1f} s;"
        f" transport {args.transport}; {loop_name()};"
        f" servers on cpu {server_cpus or 'any'}, client on cpu"
        f" {client_cpu if client_cpu is not None else 'any'}; load average {load_before[0]:.2f}",
        flush=True,
    )
    try:
        with control_plane(root, server_cpus) as cp:
            backends = BackendsProcess(
                cp.url, SERVICE, count=11, latency="linkerd", cpus=server_cpus, log=root / "b.log"
            )
            with backends:
                pin_self(client_cpu)
                rows: list[Row] = run_loop(run_all(args, cp.url, backends))
    finally:
        if args.keep:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)

    print()
    print_table(table(rows))
    print(
        "(success: answered 200 within the caller's timeout of its due time; latencies over"
        " every request, a failure at the time it took; 'to slow': share of requests the"
        " slowed instance served; 'cpu': the client process's CPU over the row; '!': the"
        " client fell behind its schedule -- sent < 95% of the rate or p99 lag > 100 ms --"
        " so its own queueing is in that row)"
    )
    goal = next((r for r in rows if r.mode == "shoal" and r.balancer == "peak_ewma"), None)
    if goal is not None:
        verdict = "met" if goal.summary.success >= GOAL_SUCCESS else "NOT met"
        print(
            f"goal: peak EWMA with shoal's retries and ejection >= 99.9% success --"
            f" {goal.summary.success:.3%}, {verdict}"
        )
    print(
        f"took {time.monotonic() - began:.0f} s; load average {load_before[0]:.2f} before,"
        f" {os.getloadavg()[0]:.2f} after (1-minute)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
