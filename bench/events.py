"""shoal.events against Redis Streams (appendfsync always) and NATS JetStream, side by
side in one invocation, 256 B messages, Python clients for every system.

* publish: awaited publishes/s from 1 producer and from 8 concurrent producers.
  shoal: `AsyncEvents.publish` on the built-in backend, 1 member and 3 members (a
  publish is acknowledged once a majority fsync'd it). Redis: a raw `XADD` (the anchor)
  and shoal's Redis adapter (`XADD` + id dedup in one Lua script). NATS: `js.publish`
  to a file-store stream (JetStream acknowledges before its fsync);
* group delivery: 2 consumers of one group drain a backlog of `--backlog` messages with a
  no-op handler (shoal and the Redis adapter: `subscribe(group=...)`, acked; raw Redis:
  XREADGROUP + XACK; NATS: two pull subscribers on one durable, acked);
* end-to-end latency: one producer paced at 1,000 msg/s for `--seconds`, one group of
  one consumer; p50/p99 from publish call to handler.

Redelivery after kill -9 is measured by tests/events/test_failover.py (it prints it).
The machine is shared and noisy: read the ratios, not the absolute numbers.

    .venv/bin/python -m bench.events             # the full run (~2-3 min)
    .venv/bin/python -m bench.events --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from shoal.events import AsyncEvents, Message, TopicConfig
from shoal.testing import LocalCluster, free_port, wait_for

PAYLOAD = "x" * 256


def log(text: str) -> None:
    print(text, flush=True)


def ensure_tools() -> None:
    missing = [t for t in ("redis-server", "nats-server") if shutil.which(t) is None]
    if not missing:
        return
    packages = {"redis-server": "redis-server", "nats-server": "nats-server"}
    log(
        f"missing {', '.join(missing)}: apt-get install -y {' '.join(packages[m] for m in missing)}"
    )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *(packages[m] for m in missing)],
        check=False, timeout=600, env=env,
    )  # fmt: skip


@contextlib.contextmanager
def process(cmd: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    out = log_path.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    import redis

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
    ]  # fmt: skip
    with process(cmd, root / "redis.log"):
        client = redis.Redis(port=port)
        wait_for(lambda: client.ping(), 15, what="redis")
        client.close()
        yield f"redis://127.0.0.1:{port}"


@contextlib.contextmanager
def nats_server(root: Path) -> Iterator[str | None]:
    if shutil.which("nats-server") is None:
        yield None
        return
    import socket

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = ["nats-server", "-js", "-sd", str(root), "-a", "127.0.0.1", "-p", str(port)]
    with process(cmd, root / "nats.log"):

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_for(up, 15, what="nats")
        yield f"nats://127.0.0.1:{port}"


# -- measurements -----------------------------------------------------------------------


async def rate(producers: int, seconds: float, publish: Callable[[int], Awaitable[Any]]) -> float:
    """Awaited calls/s of `publish`, from `producers` concurrent loops for `seconds`."""
    done = 0
    stop = time.monotonic() + seconds

    async def loop(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            await publish(n * 1_000_000 + i)
            i += 1
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(loop(n) for n in range(producers)))
    return done / (time.monotonic() - start)


async def shoal_like(
    url: str, args: argparse.Namespace, name: str, results: dict[str, dict[str, float]]
) -> None:
    """Publish, group delivery and latency through shoal.events on `url` (any backend)."""
    bus = AsyncEvents(url)
    row = results.setdefault(name, {})
    try:
        for producers in (1, 8):
            topic = f"pub{producers}"
            await bus.create_topic(topic, TopicConfig(partitions=8))
            row[f"publish/s, {producers} producer(s)"] = await rate(
                producers, args.seconds, lambda i, t=topic: bus.publish(t, PAYLOAD)
            )
            shown = row[f"publish/s, {producers} producer(s)"]
            log(f"{name}: {producers} producer(s): {shown:.0f}/s")
        # group delivery: a backlog, then two consumers drain it
        await bus.create_topic("backlog", TopicConfig(partitions=8))
        sem = asyncio.Semaphore(64)

        async def fill(i: int) -> None:
            async with sem:
                await bus.publish("backlog", PAYLOAD, key=f"k{i % 64}")

        await asyncio.gather(*(fill(i) for i in range(args.backlog)))
        got = 0
        finished = asyncio.Event()

        async def handler(message: Message) -> None:
            nonlocal got
            got += 1
            if got >= args.backlog:
                finished.set()

        start = time.monotonic()
        subs = [
            await bus.subscribe(
                "backlog", handler, group="drain", start="earliest", max_in_flight=64
            )
            for _ in range(2)
        ]
        await asyncio.wait_for(finished.wait(), 300)
        row["group delivery msg/s (2 consumers)"] = args.backlog / (time.monotonic() - start)
        log(f"{name}: group delivery {row['group delivery msg/s (2 consumers)']:.0f}/s")
        for sub in subs:
            await sub.stop()
        # end-to-end latency, below every system's capacity and at 1k msg/s
        for per_second in args.rates:
            delays: list[float] = []

            async def timed(message: Message, into: list[float] = delays) -> None:
                into.append(time.monotonic() - float(message.headers["t"]))

            topic = f"latency{per_second}"
            sub = await bus.subscribe(topic, timed, group="lat", max_in_flight=64)
            await asyncio.sleep(0.5)
            await paced(
                args.seconds,
                per_second,
                lambda t=topic: bus.publish(t, PAYLOAD, headers={"t": repr(time.monotonic())}),
            )
            await asyncio.sleep(1.0)
            await sub.stop()
            record_latency(row, delays, per_second)
            p50, p99 = (
                row[f"latency p50 ms @{per_second}/s"],
                row[f"latency p99 ms @{per_second}/s"],
            )
            log(f"{name}: latency at {per_second}/s: p50 {p50:.1f} ms p99 {p99:.1f} ms")
    finally:
        await bus.aclose()


async def paced(seconds: float, per_second: int, send: Callable[[], Awaitable[Any]]) -> None:
    """`per_second` sends/s for `seconds`, each started on its schedule (not awaited in
    turn, so a slow answer does not slow the offered rate)."""
    start, pending = time.monotonic(), set()
    total = int(seconds * per_second)
    for i in range(total):
        due = start + i / per_second
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(send())
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)


def record_latency(row: dict[str, float], delays: list[float], per_second: int) -> None:
    p50, p99 = f"latency p50 ms @{per_second}/s", f"latency p99 ms @{per_second}/s"
    if len(delays) < 20:
        row[p50] = row[p99] = float("nan")
        return
    cuts = statistics.quantiles(delays, n=100)
    row[p50], row[p99] = cuts[49] * 1000, cuts[98] * 1000


async def raw_redis(
    url: str, args: argparse.Namespace, results: dict[str, dict[str, float]]
) -> None:
    import redis.asyncio as aioredis

    client: Any = aioredis.Redis.from_url(url)
    row = results.setdefault("redis XADD (raw)", {})
    try:
        for producers in (1, 8):
            row[f"publish/s, {producers} producer(s)"] = await rate(
                producers, args.seconds, lambda i: client.xadd(f"raw{i % 8}", {"r": PAYLOAD})
            )
            shown = row[f"publish/s, {producers} producer(s)"]
            log(f"redis raw: {producers} producer(s): {shown:.0f}/s")
        for p in range(8):
            with contextlib.suppress(Exception):
                await client.xgroup_create(f"rawq{p}", "g", id="0", mkstream=True)
        pipe = client.pipeline(transaction=False)
        for i in range(args.backlog):
            pipe.xadd(f"rawq{i % 8}", {"r": PAYLOAD})
        await pipe.execute()
        got = 0

        async def consume(name: str) -> None:
            nonlocal got
            consumer: Any = aioredis.Redis.from_url(url)
            streams = {f"rawq{p}": ">" for p in range(8)}
            while got < args.backlog:
                answer = await consumer.xreadgroup("g", name, streams, count=500, block=100)
                for stream, entries in answer or []:
                    await consumer.xack(stream, "g", *[sid for sid, _ in entries])
                    got += len(entries)
            await consumer.aclose()

        start = time.monotonic()
        await asyncio.gather(consume("c1"), consume("c2"))
        row["group delivery msg/s (2 consumers)"] = args.backlog / (time.monotonic() - start)
        log(f"redis raw: group delivery {row['group delivery msg/s (2 consumers)']:.0f}/s")
    finally:
        await client.aclose()


async def raw_nats(
    url: str, args: argparse.Namespace, results: dict[str, dict[str, float]]
) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    row = results.setdefault("NATS JetStream", {})
    try:
        await js.add_stream(name="BENCH", subjects=["bench.>"])
        for producers in (1, 8):
            row[f"publish/s, {producers} producer(s)"] = await rate(
                producers, args.seconds, lambda i: js.publish(f"bench.p{i % 8}", PAYLOAD.encode())
            )
            log(
                f"nats: {producers} producer(s): {row[f'publish/s, {producers} producer(s)']:.0f}/s"
            )
        await js.add_stream(name="BACKLOG", subjects=["backlog.>"])
        sem = asyncio.Semaphore(256)

        async def fill(i: int) -> None:
            async with sem:
                await js.publish(f"backlog.{i % 8}", PAYLOAD.encode())

        await asyncio.gather(*(fill(i) for i in range(args.backlog)))
        got = 0

        async def consume() -> None:
            nonlocal got
            sub = await js.pull_subscribe("backlog.>", durable="drain")
            while got < args.backlog:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await sub.fetch(500, timeout=0.5):
                        await msg.ack()
                        got += 1

        start = time.monotonic()
        await asyncio.gather(consume(), consume())
        row["group delivery msg/s (2 consumers)"] = args.backlog / (time.monotonic() - start)
        log(f"nats: group delivery {row['group delivery msg/s (2 consumers)']:.0f}/s")
        await js.add_stream(name="LAT", subjects=["lat.>"])
        for per_second in args.rates:
            delays: list[float] = []

            async def on_msg(msg: Any, into: list[float] = delays) -> None:
                into.append(time.monotonic() - float(msg.headers["t"]))
                await msg.ack()

            sub = await js.subscribe(
                f"lat.r{per_second}", durable=f"lat{per_second}", cb=on_msg, manual_ack=True
            )
            await asyncio.sleep(0.5)
            await paced(
                args.seconds,
                per_second,
                lambda r=per_second: js.publish(
                    f"lat.r{r}", PAYLOAD.encode(), headers={"t": repr(time.monotonic())}
                ),
            )
            await asyncio.sleep(1.0)
            await sub.unsubscribe()
            record_latency(row, delays, per_second)
            p99 = row[f"latency p99 ms @{per_second}/s"]
            log(f"nats: latency at {per_second}/s: p99 {p99:.1f} ms")
    finally:
        await nc.close()


# -- the table --------------------------------------------------------------------------

RATES = (200, 1000)
METRICS = (
    "publish/s, 1 producer(s)",
    "publish/s, 8 producer(s)",
    "group delivery msg/s (2 consumers)",
    *(f"latency {q} ms @{r}/s" for r in RATES for q in ("p50", "p99")),
)


def print_table(results: dict[str, dict[str, float]]) -> None:
    systems = list(results)
    head = ["metric", *systems]
    rows = [head]
    for metric in METRICS:
        rows.append([metric, *(_fmt(results[s].get(metric)) for s in systems)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    log("")
    for r in rows:
        log("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
    log("")
    log("ratios (shoal / reference; for latency, reference / shoal: above 1 is shoal better)")
    for shoal in (s for s in systems if s.startswith("shoal (")):
        for ref in ("redis XADD (raw)", "NATS JetStream"):
            if ref not in results:
                continue
            cells = []
            for metric in METRICS:
                a, b = results[shoal].get(metric), results[ref].get(metric)
                if a and b and a == a and b == b:  # not NaN
                    cells.append(f"{metric}: {(b / a if 'latency' in metric else a / b):.2f}x")
            log(f"  {shoal} vs {ref}: " + "; ".join(cells))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


async def guarded(step: Awaitable[None], name: str, timeout: float = 300.0) -> None:
    """One system's steps, bounded: a system that hangs leaves its row short, not the run."""
    try:
        await asyncio.wait_for(step, timeout)
    except TimeoutError:
        log(f"{name}: did not finish within {timeout:.0f} s; its remaining steps are left out")


async def main_async(args: argparse.Namespace) -> None:
    ensure_tools()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        root = Path(tmp)
        for size in (1, 3):
            cluster = LocalCluster(root / f"shoal{size}", size)
            try:
                cluster.start()
                leader = cluster.leader()
                await shoal_like(
                    leader.url, args, f"shoal ({size} member{'s' if size > 1 else ''})", results
                )
            finally:
                cluster.stop()
        with redis_server(root / "redis") as url:
            await guarded(raw_redis(url, args, results), "redis")
            await guarded(shoal_like(url, args, "shoal.events on redis", results), "adapter")
        with nats_server(root / "nats") as nurl:
            if nurl is None:
                log("nats-server is not installed: NATS column left out")
            else:
                await guarded(raw_nats(nurl, args, results), "nats")
    print_table(results)
    load = os.getloadavg()
    cpus = os.cpu_count()
    log(f"load average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {cpus} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per publish/latency step")
    parser.add_argument("--backlog", type=int, default=20_000, help="messages for group delivery")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--rates", type=lambda t: [int(x) for x in t.split(",")], default=list(RATES),
        help="offered msg/s for the latency steps",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.backlog = 1.5, 2000
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
