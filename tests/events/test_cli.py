"""`shoal events ...` as a user runs it: a real process against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

from shoal.events import Events
from shoal.testing import ServerProcess


def shoal(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal.cli.main", "events", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_publish_tail_groups_lag_replay(shoal_server: ServerProcess) -> None:
    url = ["--url", shoal_server.url]
    done = shoal("publish", "orders", '{"id": 1}', "--key", "c1", "--id", "o-1",
                 "--partitions", "2", "-H", "source=cli", "--json", *url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    again = json.loads(
        shoal(
            "publish", "orders", "-", "--key", "c1", "--id", "o-1", "--json", *url, stdin="x"
        ).stdout
    )
    assert again["duplicate"] and again["offset"] == first["offset"]

    tail = shoal("tail", "orders", "--from", "0", "-n", "1", "--json", *url)
    assert tail.returncode == 0, tail.stderr
    message = json.loads(tail.stdout.splitlines()[0])
    assert message["payload"] == '{"id": 1}' and message["key"] == "c1"
    assert message["headers"] == {"source": "cli"}

    with Events(shoal_server.url) as bus:
        sub = bus.subscribe("orders", lambda m: None, group="billing", start="earliest")
        groups = json.loads(shoal("groups", "orders", "--json", *url).stdout)
        assert groups[0]["group"] == "billing" and len(groups[0]["members"]) == 1
        lag = shoal("lag", "orders", "billing", "--json", *url)
        assert lag.returncode == 0 and "lag" in json.loads(lag.stdout)
        replay = shoal("replay", "orders", "billing", "--offset", "0", "--json", *url)
        assert replay.returncode == 0 and json.loads(replay.stdout) == {"0": 0, "1": 0}
        sub.stop()


def test_bad_input_is_one_clear_line(shoal_server: ServerProcess) -> None:
    url = ["--url", shoal_server.url]
    big = shoal("publish", "orders", "-", *url, stdin="x" * (256 * 1024 + 1))
    assert big.returncode == 1 and "MAX_PAYLOAD_BYTES" in big.stderr
    assert "Traceback" not in big.stderr
    missing = shoal("lag", "orders", "nobody", *url)
    assert missing.returncode == 1 and "topic 'orders' does not exist" in missing.stderr
    assert shoal("publish", "orders", "first", *url).returncode == 0
    unknown = shoal("lag", "orders", "nobody", *url)
    assert unknown.returncode == 1 and "no group 'nobody'" in unknown.stderr
    bad_id = shoal("publish", "orders", "p", "--id", "a b", *url)
    assert bad_id.returncode == 1 and "message id" in bad_id.stderr
    both = shoal("replay", "orders", "g", "--offset", "1", "--time", "0", *url)
    assert both.returncode == 1 and "exactly one" in both.stderr
