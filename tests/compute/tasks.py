"""Task functions for the executor tests (importable, so workers can load them)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any


def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def fail_always(x: int) -> int:
    raise ValueError(f"bad partition {x}")


def first_time(marker: Path) -> bool:
    """True exactly once per marker path, across processes (O_EXCL creation)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def slow_once(arg: tuple[int, str, int]) -> int:
    """Partition ``slow`` hangs on its first attempt only; every other run takes 20 ms."""
    index, folder, slow = arg
    if index == slow and first_time(Path(folder) / "slow"):
        time.sleep(60)
    time.sleep(0.02)
    return index


def crash_once(arg: tuple[int, str]) -> int:
    """Partition 3 kills its own worker process the first time it runs."""
    index, folder = arg
    time.sleep(0.01)
    if index == 3 and first_time(Path(folder) / "crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    return index * 2


def bad_combine(a: int, b: int) -> int:
    raise RuntimeError("combine is broken")


def nap_and_mark(arg: tuple[int, str, float]) -> int:
    """Append the partition's index to ``folder/runs`` (counts executions), then nap."""
    index, folder, seconds = arg
    with open(Path(folder) / "runs", "a") as marks:
        marks.write(f"{index}\n")
    time.sleep(seconds)
    return index


def marked_job() -> Any:
    """24 partitions of ``nap_and_mark`` (0.15 s each); the folder is $SHOAL_TEST_MARKS."""
    import operator

    from shoal.compute import Job

    folder = os.environ["SHOAL_TEST_MARKS"]
    seconds = float(os.environ.get("SHOAL_TEST_NAP", "0.15"))
    parts = [(i, folder, seconds) for i in range(24)]
    return Job("marked", nap_and_mark, parts, combine=operator.add, speculative=False)


def count_words(text: str) -> Counter[str]:
    return Counter(text.split())


def merge_counts(a: Counter[str], b: Counter[str]) -> Counter[str]:
    return a + b


def fail_at(arg: tuple[int, int]) -> int:
    """Square the index, except that partition ``bad`` always raises."""
    index, bad = arg
    if index == bad:
        raise ValueError(f"bad partition {index}")
    return index * index
