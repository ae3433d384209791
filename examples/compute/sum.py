"""The brief's distributed sum, at 10**8 numbers.

    shoal job run examples.compute.sum:job            # 0 + 1 + ... + (10**8 - 1)
    shoal job run examples.compute.sum:small_job --json

    # on shoal workers: a control plane, two workers (anywhere that reaches it), the job
    shoal server &
    shoal worker --server http://127.0.0.1:7700 --slots 2 &
    shoal worker --server http://127.0.0.1:7700 --slots 2 &
    shoal job run examples.compute.sum:job --executor shoal --server http://127.0.0.1:7700
    shoal jobs --endpoints http://127.0.0.1:7700

Each task really adds its numbers up (``sum(range(a, b))``, a tight C loop) rather than
using the closed form, so the job does real work that scales with the workers.
"""

from __future__ import annotations

import operator

from shoal.compute import Job, ranges

__all__ = ["SMALL_N", "N", "job", "partial_sum", "small_job"]

N = 10**8
SMALL_N = 10**6


def partial_sum(bounds: tuple[int, int]) -> int:
    start, stop = bounds
    return sum(range(start, stop))


job = Job("sum", partial_sum, ranges(0, N, 64), combine=operator.add)
small_job = Job("sum-small", partial_sum, ranges(0, SMALL_N, 4), combine=operator.add)

if __name__ == "__main__":
    outcome = small_job.run()
    print(outcome.result, outcome.result == sum(range(SMALL_N)))
