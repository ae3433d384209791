"""Commit notices wait up to their linger for an append that carries the index instead."""

from __future__ import annotations

import asyncio

from shoal.node.commit_notices import CommitNotices
from shoal.raft import AppendEntries, Commit, Heartbeat, Message, RequestVote


def commit(dst: str, index: int) -> Commit:
    return Commit(src="n1", dst=dst, term=2, commit=index)


def append(dst: str, index: int) -> AppendEntries:
    return AppendEntries(
        src="n1", dst=dst, term=2, prev_index=index, prev_term=2, entries=(), commit=index
    )


async def sent_through(linger: float, *batches: list[Message], wait: float = 0.0) -> list[Message]:
    sent: list[Message] = []
    notices = CommitNotices(asyncio.get_running_loop(), sent.extend, linger)
    for batch in batches:
        notices.send(batch)
    await asyncio.sleep(wait)
    notices.close()
    return sent


def test_an_append_to_the_same_follower_replaces_the_held_notice() -> None:
    sent = asyncio.run(sent_through(0.05, [commit("n2", 5), commit("n3", 5)], [append("n2", 5)]))
    assert sent == [append("n2", 5)]  # n3's notice still waits; n2 learnt 5 from the append


def test_a_notice_nothing_overtakes_leaves_when_the_linger_ends() -> None:
    sent = asyncio.run(sent_through(0.01, [commit("n2", 5)], [commit("n2", 6)], wait=0.1))
    assert sent == [commit("n2", 6)]  # the newest index, once


def test_an_older_append_or_another_followers_does_not_replace_it() -> None:
    sent = asyncio.run(
        sent_through(0.01, [commit("n2", 7)], [append("n2", 6), append("n3", 7)], wait=0.1)
    )
    assert sent == [append("n2", 6), append("n3", 7), commit("n2", 7)]


def test_a_heartbeat_carries_the_index_too_and_other_messages_pass_at_once() -> None:
    beat = Heartbeat(src="n1", dst="n2", term=2, commit=5)
    vote = RequestVote(src="n1", dst="n3", term=3, last_index=5, last_term=2)
    sent = asyncio.run(sent_through(0.05, [commit("n2", 5)], [beat, vote]))
    assert sent == [beat, vote]


def test_no_linger_sends_notices_at_once() -> None:
    assert asyncio.run(sent_through(0.0, [commit("n2", 5)])) == [commit("n2", 5)]


def test_close_forgets_what_is_held() -> None:
    async def scenario() -> list[Message]:
        sent: list[Message] = []
        notices = CommitNotices(asyncio.get_running_loop(), sent.extend, 0.01)
        notices.send([commit("n2", 5)])
        notices.close()
        await asyncio.sleep(0.05)
        return sent

    assert asyncio.run(scenario()) == []
