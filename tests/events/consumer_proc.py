"""A consumer in a process of its own, for tests that kill it: one line per handled
message appended to `--out` (written before the handler returns, so a line means
"handled"; a kill -9 keeps every line already written).

    python -m tests.events.consumer_proc --url URL --topic T --group G --out FILE [--stall]

With `--stall` the handler writes a `started` line and then never returns (so the
message stays in flight until the process is killed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time

from shoal.events import Events, Message


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stall", action="store_true")
    parser.add_argument("--max-in-flight", type=int, default=8)
    args = parser.parse_args()
    # The shell's INFO lines (a claim unsure, a start-over and why) go to the process's
    # log beside --out, which a failing test prints.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    lock = threading.Lock()

    def write(kind: str, message: Message) -> None:
        line = json.dumps(
            {
                "kind": kind,
                "group": args.group,
                "pid": os.getpid(),
                "id": message.id,
                "key": message.key,
                "offset": message.offset,
                "partition": message.partition,
                "attempt": message.attempt,
                "payload": message.text,
                "at": time.time(),
            }
        )
        with lock:
            out.write(line + "\n")
            out.flush()

    def handle(message: Message) -> None:
        if args.stall:
            write("started", message)
            threading.Event().wait()
        write("handled", message)

    bus = Events(args.url)
    bus.subscribe(args.topic, handle, group=args.group, max_in_flight=args.max_in_flight)
    print("joined", flush=True)
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
