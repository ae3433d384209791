"""Cost of one `pick` for every load-balancing policy, against `random.choice`.

`pick` runs on every request of the SDK and of the gateway, so its cost is what the
policies are judged by here. For each policy and pool (10 and 100 hosts, all of weight 1
or of mixed weights 1-3) the benchmark builds a balancer, warms it up with a request to
every host (so peak EWMA has measurements, as in steady state), then times a tight loop
of picks: hash policies get a key from a pre-built list (so string building is not
timed), the others none. Mixed weights switch least_request to its EDF schedule and
make P2C draw by weight. The reference
row is `random.choice` over a list of the same hosts, timed the same way in the same
run, and every row reports its ratio to that reference. A second table times `update`
(the rebuilds: prefix sums, rings, Maglev tables), which runs on every pool change.

Each figure is the best of REPEATS runs with the garbage collector off. Before timing,
every policy's picks are checked to come from the pool, so a broken policy fails
instead of printing a number.

    .venv/bin/python -m bench.balance            # the full run (~1 min on 2 slow cores)
    .venv/bin/python -m bench.balance --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable

from shoal.balance import POLICIES, Balancer, Host, make_balancer

SIZES = (10, 100)
POOLS = [(n, mixed) for mixed in (False, True) for n in SIZES]
REPEATS = 5
HASHED = ("ring_hash", "maglev")


def require(condition: bool, message: str) -> None:
    """An assert that `python -O` cannot strip: a broken run must never print a number."""
    if not condition:
        raise SystemExit(f"bench.balance: {message}")


def hosts(n: int, mixed: bool = False) -> list[Host]:
    return [
        Host(id=f"10.0.{i // 250}.{i % 250}:8080", weight=1.0 + (i % 3 if mixed else 0))
        for i in range(n)
    ]


def best_ns_per_op(loop: Callable[[int], None], ops: int) -> float:
    best = float("inf")
    gc.disable()
    try:
        for _ in range(REPEATS):
            start = time.perf_counter_ns()
            loop(ops)
            best = min(best, (time.perf_counter_ns() - start) / ops)
    finally:
        gc.enable()
    return best


def pick_loop(b: Balancer, policy: str) -> Callable[[int], None]:
    pick = b.pick
    if policy in HASHED:
        keys = [f"user-{i}" for i in range(1024)]

        def keyed(ops: int) -> None:
            for i in range(ops):
                pick(1.0, key=keys[i & 1023])

        return keyed

    def plain(ops: int) -> None:
        for _ in range(ops):
            pick(1.0)

    return plain


def reference_loop(n: int) -> Callable[[int], None]:
    pool = hosts(n)
    choice = random.Random(1).choice

    def loop(ops: int) -> None:
        for _ in range(ops):
            choice(pool)

    return loop


def check_and_warm(b: Balancer, pool: list[Host]) -> None:
    members = {h.id for h in pool}
    for i in range(200):
        host = b.pick(1.0, key=f"k{i}")
        require(host is not None and host.id in members, f"{b!r} picked {host!r}")
    for i, h in enumerate(pool):
        b.started(h.id, 0.5)
        b.finished(h.id, 0.5, 0.010 + 0.001 * (i % 7), True)


def label(n: int, mixed: bool) -> str:
    return f"{n}{'w' if mixed else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, fewer picks")
    args = parser.parse_args(argv)
    ops = 2_000 if args.quick else 50_000

    print(f"ns per pick, best of {REPEATS} x {ops} picks (python {sys.version.split()[0]});")
    print("pools of 10 and 100 hosts, weight 1 (10, 100) or mixed weights 1-3 (10w, 100w)")
    head = "".join(f"{label(n, m):>8}{'x':>6}" for n, m in POOLS)
    print(f"{'policy':<22}{head}")
    reference = {n: best_ns_per_op(reference_loop(n), ops) for n in SIZES}
    print(
        f"{'random.choice (ref)':<22}"
        + "".join(f"{reference[n]:>8.0f}{1.0:>6.1f}" for n, _ in POOLS)
    )
    builds: dict[str, dict[str, float]] = {}
    for policy in POLICIES:
        row = f"{policy:<22}"
        builds[policy] = {}
        for n, mixed in POOLS:
            pool = hosts(n, mixed)
            b = make_balancer(policy, random.Random(1))
            start = time.perf_counter_ns()
            b.update(pool, 0.0)
            builds[policy][label(n, mixed)] = (time.perf_counter_ns() - start) / 1e6
            check_and_warm(b, pool)
            ns = best_ns_per_op(pick_loop(b, policy), ops)
            row += f"{ns:>8.0f}{ns / reference[n]:>6.1f}"
        print(row)

    print()
    print("ms for the first update (the build of a new pool)")
    print(f"{'policy':<22}" + "".join(f"{label(n, m):>8}" for n, m in POOLS))
    for policy in POLICIES:
        cells = "".join(f"{builds[policy][label(n, m)]:>8.2f}" for n, m in POOLS)
        print(f"{policy:<22}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
