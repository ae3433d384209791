"""Kill -9 consumers and servers mid-stream; nothing acknowledged is lost.

The issue's scenario: 3 control-plane members, 2 consumer groups, 4 consumer processes
(tests/events/consumer_proc.py). While a producer publishes keyed messages, one consumer
is killed with SIGKILL, then the leader of the control plane. At the end every message
whose publish was acknowledged was handled by each group at least once, the messages of
each key were first handled in publication order, and repeats are few (only what was in
flight at a kill). On Redis and NATS the server itself is killed and restarted instead
of a leader (Redis: appendfsync always, what it acknowledged is on disk; NATS 2.9: what
it acknowledged was written to the operating system, which a kill -9 of the process
does not lose).

Then: a stalled consumer's message goes to another member within 2 s of its kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal.events import Events, EventsError, TopicConfig
from shoal.testing import LocalCluster, wait_for

from .conftest import NatsServer, RedisServer, backend_url

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ConsumerProc:
    group: str
    out: Path
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        log = self.out.with_suffix(".log")
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""

    def lines(self) -> list[dict[str, object]]:
        if not self.out.exists():
            return []
        text = self.out.read_text()
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def start_consumer(url: str, topic: str, group: str, out: Path, *extra: str) -> ConsumerProc:
    log = out.with_suffix(".log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.events.consumer_proc", "--url", url, "--topic", topic,
         "--group", group, "--out", str(out), *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    log.close()
    return ConsumerProc(group, out, proc)


@pytest.fixture
def consumers() -> Iterator[list[ConsumerProc]]:
    procs: list[ConsumerProc] = []
    yield procs
    for c in procs:
        c.kill()


def publish_retrying(bus: Events, topic: str, payload: str, key: str, message_id: str) -> bool:
    """Publish until acknowledged (the same id, so a retry is never a second message)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            bus.publish(topic, payload, key=key, id=message_id)
            return True
        except EventsError:
            time.sleep(0.1)
    return False


def wait_all_own(
    bus: Events,
    topic: str,
    groups: list[str],
    partitions: int,
    members: int,
    consumers: list[ConsumerProc],
) -> None:
    seen: list[dict[str, object]] = []

    def settled() -> bool:
        infos = bus.groups(topic)
        seen[:] = [info.to_json() for info in infos]
        for info in infos:
            if info.group in groups and (
                len(info.claims) != partitions or len(set(info.claims.values())) != members
            ):
                return False
        return {g.group for g in infos} >= set(groups)

    try:
        wait_for(settled, 30, interval=0.1, what="every partition claimed by both members")
    except TimeoutError as error:  # what the group looked like, and what each consumer said
        logs = "\n".join(
            f"--- {c.out.name} (exit {c.proc.poll()}):\n{c.log_tail()}" for c in consumers
        )
        raise AssertionError(f"{error}\nlast view: {json.dumps(seen)}\n{logs}") from None


def run_scenario(
    url: str, tmp: Path, consumers: list[ConsumerProc], kill_server: Callable[[], None]
) -> None:
    topic, total, keys = "orders", 300, 12
    with Events(url) as bus:
        bus.create_topic(topic, TopicConfig(partitions=8))
        for group in ("billing", "audit"):
            for n in range(2):
                consumers.append(start_consumer(url, topic, group, tmp / f"{group}{n}.jsonl"))
        wait_all_own(bus, topic, ["billing", "audit"], 8, 2, consumers)
        acked: list[tuple[str, str, int]] = []
        for i in range(total):
            key = f"k{i % keys}"
            seq = i // keys
            if publish_retrying(bus, topic, f"{key}:{seq}", key, f"m{i}"):
                acked.append((f"m{i}", key, seq))
            if i == total // 3:
                consumers[0].kill()  # a billing consumer, mid-stream
            if i == 2 * total // 3:
                kill_server()
            time.sleep(0.01)

    handled: dict[str, list[dict[str, object]]] = defaultdict(list)

    def everything_handled() -> bool:
        handled.clear()
        for c in consumers:
            handled[c.group] += [x for x in c.lines() if x["kind"] == "handled"]
        want = {m for m, _, _ in acked}
        return all(want <= {str(x["id"]) for x in handled[g]} for g in ("billing", "audit"))

    wait_for(everything_handled, 90, interval=0.25, what="every acknowledged message handled")
    assert len(acked) == total, "every publish was acknowledged in the end"
    for group in ("billing", "audit"):
        lines = sorted(handled[group], key=lambda x: float(x["at"]))  # type: ignore[arg-type]
        first_seen: dict[str, list[int]] = defaultdict(list)
        seen: set[str] = set()
        for x in lines:
            if x["id"] in seen:
                continue
            seen.add(str(x["id"]))
            key, seq = str(x["payload"]).split(":")
            first_seen[key].append(int(seq))
        for key, seqs in first_seen.items():
            assert seqs == sorted(seqs), f"{group}: key {key} first handled out of order"
        repeats = len(lines) - len(seen)
        print(f"{group}: {len(lines)} handled, {repeats} repeats")
        assert repeats <= total // 3, f"{group}: {repeats} repeats is more than kills explain"


def test_kill_a_consumer_and_the_leader_mid_stream(
    three_members: LocalCluster, tmp_path: Path, consumers: list[ConsumerProc]
) -> None:
    url = ",".join(three_members.endpoints())
    run_scenario(url, tmp_path, consumers, lambda: three_members.leader().kill())


def test_kill_a_consumer_and_redis_mid_stream(
    redis_server: RedisServer, tmp_path: Path, consumers: list[ConsumerProc]
) -> None:
    def kill_and_restart() -> None:
        redis_server.kill()
        redis_server.start()

    run_scenario(redis_server.url, tmp_path, consumers, kill_and_restart)


def test_kill_a_consumer_and_nats_mid_stream(
    nats_server: NatsServer, tmp_path: Path, consumers: list[ConsumerProc]
) -> None:
    def kill_and_restart() -> None:
        nats_server.kill()
        nats_server.start()

    run_scenario(nats_server.url, tmp_path, consumers, kill_and_restart)


@pytest.fixture(params=["shoal", "redis", "nats"])
def server_url(request: pytest.FixtureRequest) -> str:
    return backend_url(request, request.param)


def test_redelivery_within_two_seconds_of_a_kill(
    server_url: str, tmp_path: Path, consumers: list[ConsumerProc]
) -> None:
    topic = "work"
    with Events(server_url) as bus:
        bus.create_topic(topic, TopicConfig(partitions=4))
        stalled = start_consumer(
            server_url, topic, "g", tmp_path / "a.jsonl", "--stall", "--max-in-flight", "1"
        )
        consumers.append(stalled)
        consumers.append(start_consumer(server_url, topic, "g", tmp_path / "b.jsonl"))
        wait_all_own(bus, topic, ["g"], 4, 2, consumers)
        sent = 0

        def started() -> str | None:
            nonlocal sent
            lines = [x for x in stalled.lines() if x["kind"] == "started"]
            if lines:
                return str(lines[0]["id"])
            bus.publish(topic, "job", key=f"key-{sent}", id=f"job-{sent}")
            sent += 1
            return None

        stuck = wait_for(started, 20, interval=0.05, what="the stalled consumer to take one")
        killed_at = time.monotonic()
        stalled.kill()

        def redelivered() -> bool:
            return any(x["id"] == stuck and x["kind"] == "handled" for x in consumers[1].lines())

        wait_for(redelivered, 10, interval=0.01, what="redelivery to the other member")
        elapsed = time.monotonic() - killed_at
        print(f"redelivered {elapsed:.3f} s after kill -9")
        assert elapsed <= 2.0
