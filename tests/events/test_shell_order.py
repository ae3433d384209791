"""The consumer shell copes with any order of its inbox: a watch may overtake answers.

Seen in CI (tests/events/test_failover.py): a member claimed all 8 partitions, and the
watch delivered its own 8 claims and a second member's join *before* the claim answers
came back. Each claim answer then only marked its partition settling; nothing ran the
plan again, so the member held all 8 partitions forever and the newcomer got none.

The backend here is scripted (the shell's protocol with a backend is internal); the
real backends run the same shell in tests/events/test_events.py and test_failover.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.events.assignment import assign
from shoal.events.model import Message, TopicConfig
from shoal.events.shell import ConsumerShell, Stopped, View
from shoal.events.types import SubscribeOptions

PARTITIONS = 8
NEWCOMER = "zzzz"  # sorts after any hex member id: a fixed half of the partitions


class ScriptedShell(ConsumerShell):
    """Claims succeed; the watch's events (every claim, then a newcomer's join) all
    arrive before the first claim answer does."""

    def __init__(self) -> None:
        super().__init__(
            "orders", TopicConfig(partitions=PARTITIONS), "billing", self.handle,
            SubscribeOptions(), self.dead_letter,
        )  # fmt: skip
        self.released: set[int] = set()
        self.all_released = asyncio.Event()
        self._claimed = 0
        self._watch_caught_up = asyncio.Event()

    def handle(self, message: Message) -> None:
        raise AssertionError("no messages in this script")

    async def dead_letter(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no dead letters in this script")

    async def _run_once(self) -> None:
        self._view = View(members={self.member_id})
        self._reconcile()
        await self._main()
        raise Stopped

    async def _claim(self, partition: int, generation: int) -> None:
        self._put(generation, ("group", ("claim", partition, self.member_id)))
        self._claimed += 1
        if self._claimed == PARTITIONS:
            self._put(generation, ("group", ("join", NEWCOMER)))
            self._watch_caught_up.set()
        await self._watch_caught_up.wait()
        self._put(generation, ("assigned", partition, 0))
        self._put(generation, ("loaded", partition, ()))

    async def _release(self, partition: int, committed: int, generation: int) -> None:
        self.released.add(partition)
        self._put(generation, ("group", ("unclaim", partition, "")))
        self._put(generation, ("handed-back", partition))
        if len(self.released) == PARTITIONS // 2:
            self.all_released.set()

    def _apply_group_event(self, event: Any) -> None:
        kind, *rest = event
        if kind == "join":
            self._view.members.add(rest[0])
        elif kind == "claim":
            self._view.claims[rest[0]] = rest[1]
        else:
            self._view.claims.pop(rest[0], None)


async def scenario() -> ScriptedShell:
    shell = ScriptedShell()
    runner = asyncio.create_task(shell.run())
    try:
        await asyncio.wait_for(shell.all_released.wait(), 10)
    finally:
        shell._inbox.put_nowait(("stop",))
        shell._stopping = True
        await asyncio.wait_for(runner, 10)
    return shell


def test_a_join_seen_before_the_claim_answers_still_hands_half_back() -> None:
    shell = asyncio.run(scenario())
    owners = assign([shell.member_id, NEWCOMER], PARTITIONS)
    assert shell.released == {p for p, m in owners.items() if m == NEWCOMER}
    assert shell.partitions == {p for p, m in owners.items() if m == shell.member_id}
