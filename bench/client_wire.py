"""The async client's two ways to send a unary call, side by side on one member.

`AsyncControlPlane` sends its unary calls on `shoal.client.aiowire` (asyncio protocols +
httptools); with `wire=False` they go through `httpx.AsyncClient`, as before aiowire.
This runs both on the same single member in alternating rounds, one awaited caller each
(the way a service or an events producer calls), and prints per system: calls/s, the
caller's CPU per call (`time.process_time`), the member's CPU per call (from /proc), and
the ratios.

    .venv/bin/python -m bench.client_wire            # 4 rounds x 3 s per system
    .venv/bin/python -m bench.client_wire --rounds 2 --seconds 2

Read the ratios: this machine is shared and its speed moves between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from shoal.client import AsyncControlPlane
from shoal.testing import ServerProcess

VALUE = "x" * 256


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of every thread of `pid`."""
    ticks = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def measure(
    seconds: float, pid: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, float, float]:
    """(calls/s, caller CPU us/call, member CPU us/call) of sequential calls."""
    done = 0
    member0, caller0, start = process_cpu(pid), time.process_time(), time.monotonic()
    stop = start + seconds
    while time.monotonic() < stop:
        await call(done)
        done += 1
    elapsed = time.monotonic() - start
    return (
        done / elapsed,
        (time.process_time() - caller0) / done * 1e6,
        (process_cpu(pid) - member0) / done * 1e6,
    )


async def run(
    url: str, pid: int, rounds: int, seconds: float
) -> dict[str, list[tuple[float, ...]]]:
    wire = AsyncControlPlane(url, wire=True)
    via_httpx = AsyncControlPlane(url, wire=False)  # the way before aiowire: all on httpx
    systems = {"aiowire": wire, "httpx": via_httpx}
    results: dict[str, list[tuple[float, ...]]] = {
        f"{n} {op}": [] for n in systems for op in ("put", "get")
    }
    try:
        for cp in systems.values():  # warm up: connections open, code paths hot
            for i in range(200):
                await cp.put(f"/bench/wire/{i % 50}", VALUE)
        for _ in range(rounds):
            for name, cp in systems.items():

                async def put(i: int, cp: AsyncControlPlane = cp) -> object:
                    return await cp.put(f"/bench/wire/{i % 50}", VALUE)

                async def get(i: int, cp: AsyncControlPlane = cp) -> object:
                    return await cp.get(f"/bench/wire/{i % 50}")

                results[f"{name} put"].append(await measure(seconds, pid, put))
                results[f"{name} get"].append(await measure(seconds, pid, get))
    finally:
        await wire.aclose()
        await via_httpx.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wire-") as tmp:
        member = ServerProcess("n1", Path(tmp) / "data").start()
        try:
            member.wait_ready()
            assert member.proc is not None
            results = asyncio.run(run(member.url, member.proc.pid, args.rounds, args.seconds))
        finally:
            member.kill()
    medians = {
        name: tuple(statistics.median(r[i] for r in rows) for i in range(3))
        for name, rows in results.items()
    }
    title = f"median of {args.rounds}"
    print(f"{title:<16} {'calls/s':>9} {'caller us/call':>15} {'member us/call':>15}")
    for name, (rate, caller, member_cpu) in medians.items():
        print(f"{name:<16} {rate:>9.0f} {caller:>15.0f} {member_cpu:>15.0f}")
    for op in ("put", "get"):
        new, old = medians[f"aiowire {op}"], medians[f"httpx {op}"]
        print(
            f"{op}: aiowire/httpx calls/s {new[0] / old[0]:.2f}x; caller CPU per call "
            f"{old[1] / new[1]:.1f}x less; member CPU per call {old[2] / new[2]:.2f}x less"
        )


if __name__ == "__main__":
    main()
