"""A consumer's side loop must end when cancelled even if a library swallowed the cancel
(redis-py did, under load: the consumer's stop then hung; see `end_if_cancelled`)."""

from __future__ import annotations

import asyncio

from shoal.events.shell import end_if_cancelled


async def a_loop(guarded: bool, rounds: list[int]) -> None:
    swallowed = False
    while True:
        if guarded:
            end_if_cancelled()
        rounds.append(1)
        try:  # a library call that eats the first CancelledError it was interrupted by
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True


def run(guarded: bool) -> tuple[bool, int]:
    async def scenario() -> tuple[bool, int]:
        rounds: list[int] = []
        task = asyncio.create_task(a_loop(guarded, rounds))
        await asyncio.sleep(0.05)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        ended = task in done
        if not ended:  # the unguarded loop: a second cancel stops it
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        return ended, len(rounds)

    return asyncio.run(scenario())


def test_a_swallowed_cancel_still_ends_a_guarded_loop() -> None:
    ended, _ = run(guarded=True)
    assert ended


def test_without_the_guard_the_same_loop_goes_on() -> None:
    # The control: this is the hang the guard exists for.
    ended, rounds = run(guarded=False)
    assert not ended and rounds > 10
