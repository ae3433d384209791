"""The SDK's own cost per call: `AsyncServiceClient` against a bare `httpx.AsyncClient`.

Linkerd's latency budget for its proxy is "< 1 ms p95 at 1,000 requests/s"; this
benchmark holds shoal's client-side SDK to the same line. Both clients call the same
backend instance -- one port of bench/sdk_backends.py answering at once, registered in a
real `shoal server` -- at the same fixed rate, open loop (bench/open_loop.py: latency
from each request's due time, so a client that falls behind cannot hide it):

* reference: `httpx.AsyncClient` with the SDK's connection limits, `GET url/work`;
* SDK: `AsyncServiceClient` with the default `ClientPolicy` (peak EWMA, retries,
  breakers, outlier ejection, trace headers, metrics), `GET /work` by service name.

They run in the same invocation, in alternating segments (A B B A A B ...), so the load
the machine's other users put on it falls on both alike; each gets a warm-up first. The
table gives p50/p95/p99/p99.9 of each, the *added* latency (SDK minus reference at the
same percentile) and the client process's CPU time per request, which is the most
direct figure of what the SDK adds and the one least moved by other processes.
The client runs on one core, the backend and the control plane on the other.

    .venv/bin/python -m bench.sdk_overhead            # 6 x 2 segments of 10 s (~2.5 min)
    .venv/bin/python -m bench.sdk_overhead --quick    # a smoke run (~20 s)
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness import terminate
from bench.open_loop import (
    LIMITS,
    OK,
    TRANSPORTS,
    BackendsProcess,
    Sample,
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

SERVICE = "sdk-overhead"
GOAL_ADDED_P95 = 0.001  # seconds: Linkerd's budget, "< 1 ms p95 at 1000 qps"


@dataclass
class Measured:
    samples: list[Sample] = field(default_factory=list)
    cpu: float = 0.0  # client process CPU seconds spent in this client's segments
    slowest: float = float("inf")  # the lowest send rate of any of its segments, per s


def _status(response: httpx.Response) -> str:
    return OK if response.status_code == 200 else f"status {response.status_code}"


async def measure(args: argparse.Namespace, endpoints: str, url: str) -> dict[str, Measured]:
    sdk = AsyncServiceClient(
        SERVICE,
        endpoints=endpoints,
        policy=ClientPolicy(),
        transport=make_transport(args.transport),
    )
    bare = httpx.AsyncClient(
        limits=LIMITS, timeout=httpx.Timeout(5.0), transport=make_transport(args.transport)
    )
    try:
        await asyncio.to_thread(
            wait_for, lambda: len(sdk.instances()) == 1, 30, what="the backend in the SDK's view"
        )

        async def via_sdk() -> str:
            return _status(await sdk.get("/work"))

        async def via_httpx() -> str:
            return _status(await bare.get(url + "/work"))

        calls: dict[str, Callable[[], Awaitable[str]]] = {"httpx": via_httpx, "sdk": via_sdk}
        out = {name: Measured() for name in calls}
        for call in calls.values():  # connections, caches, the first peak-EWMA samples
            await open_loop(call, args.rate, args.warmup, time.perf_counter() + 0.05, 10.0)
        for segment in range(args.segments):
            # A B B A A B ...: a drift in the machine's load falls on both alike.
            names = ("httpx", "sdk") if segment % 2 == 0 else ("sdk", "httpx")
            for name in names:
                cpu = time.process_time()
                samples = await open_loop(
                    calls[name], args.rate, args.segment, time.perf_counter() + 0.05, 10.0
                )
                out[name].cpu += time.process_time() - cpu
                out[name].samples += samples
                out[name].slowest = min(out[name].slowest, summarize(samples).rate)
        return out
    finally:
        await bare.aclose()
        await sdk.aclose()


def row(name: str, s: Summary, m: Measured) -> tuple[str, ...]:
    failed = s.count - s.ok
    cpu = m.cpu
    return (
        name,
        str(s.count),
        str(failed),
        f"{m.slowest:.0f}",
        ms(s.p(0.50)),
        ms(s.p(0.95)),
        ms(s.p(0.99)),
        ms(s.p(0.999)),
        ms(percentile(s.service, 0.95)),
        ms(percentile(s.lag, 0.99)),
        f"{cpu / s.count * 1e6:.0f}",
    )


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        cells = zip(r, widths, strict=True)
        print(" | ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(cells)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: short segments")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--segment", type=float, help="seconds per segment (10; quick 3)")
    parser.add_argument("--segments", type=int, help="segments per client (6; quick 2)")
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="aiohttp",
        help="what both clients send with: aiohttp's pool (httpx-aiohttp) or httpx's own",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and servers")
    parser.add_argument("--keep", type=Path, help="copy the processes' logs here")
    args = parser.parse_args(argv)
    args.segment = args.segment or (3.0 if args.quick else 10.0)
    args.segments = args.segments or (2 if args.quick else 6)
    args.warmup = 1.0 if args.quick else 3.0
    signal.signal(signal.SIGTERM, terminate)

    server_cpus, client_cpu = split_cpus(not args.no_pin)
    root = Path(tempfile.mkdtemp(prefix="shoal-sdk-overhead-"))
    began, load_before = time.monotonic(), os.getloadavg()
    print(
        f"sdk_overhead: {args.rate:.0f} req/s open loop, {args.segments} x {args.segment:.0f} s"
        f" per client; transport {args.transport}; {loop_name()};"
        f" servers on cpu {server_cpus or 'any'}, client on cpu"
        f" {client_cpu if client_cpu is not None else 'any'}; load average"
        f" {load_before[0]:.2f} {load_before[1]:.2f}",
        flush=True,
    )
    try:
        with control_plane(root, server_cpus) as cp:
            backend = BackendsProcess(
                cp.url, SERVICE, count=1, latency="zero", cpus=server_cpus, log=root / "b.log"
            )
            with backend:
                pin_self(client_cpu)
                measured = run_loop(measure(args, cp.url, backend.url(0)))
    finally:
        if args.keep:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
    load_after, took = os.getloadavg(), time.monotonic() - began

    bare, sdk = summarize(measured["httpx"].samples), summarize(measured["sdk"].samples)
    print()
    print_table(
        [
            (
                *["client", "requests", "failed", "sent/s (worst segment)"],
                *(f"{q} ms" for q in ("p50", "p95", "p99", "p99.9")),
                *("p95 sent->end", "p99 lag", "cpu us/req"),
            ),
            row("httpx.AsyncClient (reference)", bare, measured["httpx"]),
            row("AsyncServiceClient", sdk, measured["sdk"]),
        ]
    )
    added = {q: sdk.p(q) - bare.p(q) for q in (0.5, 0.95, 0.99)}
    cpu_added = (measured["sdk"].cpu / sdk.count - measured["httpx"].cpu / bare.count) * 1e6
    print(
        f"\nadded by the SDK: p50 {ms(added[0.5])} ms, p95 {ms(added[0.95])} ms,"
        f" p99 {ms(added[0.99])} ms; client CPU {cpu_added:.0f} us per request"
    )
    failed = (bare.count - bare.ok) + (sdk.count - sdk.ok)
    behind = min(measured["httpx"].slowest, measured["sdk"].slowest) < 0.95 * args.rate
    if failed or behind:
        # A client that failed calls or fell behind its schedule measured its own
        # queueing, not the SDK: there is no verdict to give.
        verdict = "not measured (a client failed calls or fell behind its schedule)"
    else:
        verdict = "met" if added[0.95] < GOAL_ADDED_P95 else "NOT met"
    print(f"goal (Linkerd's budget): added p95 < 1 ms at 1,000 req/s -- {verdict}")
    print(
        f"took {took:.0f} s; load average {load_before[0]:.2f} before,"
        f" {load_after[0]:.2f} after (1-minute)"
    )
    if failed:
        print(f"failures: httpx {bare.failures}, sdk {sdk.failures}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
