"""`python -m shoal.raft.sim`: run seeded Raft simulations and report any violation.

    python -m shoal.raft.sim --seeds 2000 --members 5          # seeds 0..1999
    python -m shoal.raft.sim --seed 1234 --members 5 --trace   # replay one, with timeline
    python -m shoal.raft.sim --seeds 300 --inject-bug vote-twice  # prove the checks bite

This is the simulator's command-line shell: it alone prints and uses processes (to spread
seeds over cores); everything it runs is pure and deterministic.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from .bugs import BUGS, inject
from .chaos import ChaosProfile, SimResult, simulate


def _run_one(job: tuple[int, int, str | None, int]) -> SimResult:
    seed, members, bug, fault_ticks = job
    with inject(bug):
        return simulate(seed, members, ChaosProfile(fault_ticks=fault_ticks))


def _jobs(args: argparse.Namespace) -> list[tuple[int, int, str | None, int]]:
    seeds: Iterable[int] = (
        [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    )
    return [(s, m, args.inject_bug, args.fault_ticks) for s in seeds for m in args.members]


def _members(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part]
    if not sizes or any(n < 1 or n > 9 for n in sizes):
        raise argparse.ArgumentTypeError("members must be a comma list of sizes 1..9, e.g. 3,5")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shoal.raft.sim", description=__doc__.split("\n")[0]
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run (replay) exactly this seed")
    which.add_argument("--seeds", type=int, default=200, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed of --seeds")
    parser.add_argument("--members", type=_members, default=[3, 5], help="cluster sizes: 3,5")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes to spread seeds over"
    )
    parser.add_argument("--fault-ticks", type=int, default=ChaosProfile().fault_ticks)
    parser.add_argument("--inject-bug", choices=sorted(BUGS), help="break the core on purpose")
    parser.add_argument("--trace", action="store_true", help="print the timeline (one seed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.trace:
        if args.seed is None:
            print("--trace needs --seed", file=sys.stderr)
            return 2
        for members in args.members:
            with inject(args.inject_bug):
                result = simulate(
                    args.seed,
                    members,
                    ChaosProfile(fault_ticks=args.fault_ticks),
                    trace=lambda tick, text: print(f"t={tick:<5} {text}"),
                )
            _report([result], args, 0.0)
        return 0 if result.ok else 1
    jobs = _jobs(args)
    started = time.perf_counter()
    results: list[SimResult] = []
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            for done, result in enumerate(pool.map(_run_one, jobs, chunksize=16), 1):
                results.append(result)
                _progress(done, len(jobs), result)
    else:
        for done, job in enumerate(jobs, 1):
            results.append(_run_one(job))
            _progress(done, len(jobs), results[-1])
    return _report(results, args, time.perf_counter() - started)


def _progress(done: int, total: int, result: SimResult) -> None:
    if not result.ok:
        print(f"VIOLATION seed={result.seed} members={result.members}: {result.violation}")
    if done % 1000 == 0 and done < total:
        print(f"... {done}/{total} simulations", flush=True)


def _report(results: list[SimResult], args: argparse.Namespace, seconds: float) -> int:
    bad = [r for r in results if not r.ok]
    recoveries = [r.recovery_ticks for r in results if r.recovery_ticks is not None]
    print(
        f"{len(results)} simulations (members {','.join(map(str, args.members))}), "
        f"{len(bad)} violations"
        + (f" [injected bug: {args.inject_bug}]" if args.inject_bug else "")
    )
    print(
        f"  acknowledged writes {sum(r.acked_writes for r in results)}, "
        f"linearizable reads checked {sum(r.reads_checked for r in results)}, "
        f"leaders elected {sum(r.leaders for r in results)}, "
        f"messages {sum(r.messages for r in results)}"
    )
    if recoveries:
        print(
            f"  ticks from healing to a committed write everywhere: median "
            f"{statistics.median(recoveries):g}, max {max(recoveries)}"
        )
    if seconds:
        print(f"  {seconds:.1f} s, {1000 * seconds / max(1, len(results)):.0f} ms per simulation")
    for r in bad[:10]:
        print(f"VIOLATION seed={r.seed} members={r.members}: {r.violation}")
        print(f"  replay: {r.replay_command(args.inject_bug)} --trace")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
