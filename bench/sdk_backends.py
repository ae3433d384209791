"""The backends of the SDK benchmarks: one process serving N registered instances.

    python -m bench.sdk_backends --endpoints http://127.0.0.1:7700 --service linkerd \\
        --count 11 --latency linkerd --seed 1

Theory of operation. One asyncio process (uvloop, uvicorn with httptools) listens on
`count` loopback ports, one socket per instance, and registers each port as an instance
of `service` in the control plane's registry over its own keep-alive stream
(`shoal.client.RegistrationHolder`), exactly as a `shoal.Service` process does. One
process rather than eleven because the machine has two cores: eleven interpreters would
spend more CPU on their own bookkeeping than on answering, and the experiment is about
latency the backends *choose*, not about their CPU. The instances are still separate
for the client: separate addresses, connections and registry entries.

`GET /work` on port P answers 200 "ok" after P's latency:

* `--latency linkerd`: a fresh draw from a normal distribution of mean 167 ms and
  standard deviation 5 ms (clipped at 0) per request -- the distribution of Linkerd's
  2016 experiment, whose backends replayed production latency with that median and
  spread and no significant peaks. A seeded `random.Random`, so a run is repeatable;
* `--latency zero`: answer at once (the SDK overhead benchmark's fast backend).

The benchmark drives the fault through the same port: `POST /_bench/slow?port=P&
latency=2&seconds=30` fixes P's latency to 2 s for the next 30 s (the post's "single
server's latency fixed to 2 seconds for 30 seconds"), then P is back to normal.
`GET /_bench/stats` reports requests served and in flight per port (`?reset=1` zeroes
the counts), so a benchmark can tell how much traffic each balancer sent to the slow
instance and wait until every slow request has finished before the next row.

Once every instance is registered the process prints one line, `READY {json}`, with the
ports and instance ids, and serves until SIGTERM or SIGINT; a kill closes the keep-alive
streams, so the control plane drops the instances at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from shoal.client import AsyncControlPlane, RegistrationHolder

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LINKERD_MEAN, LINKERD_SD = 0.167, 0.005  # seconds: the post's backend latency

READY = "READY "


@dataclass
class Instance:
    port: int
    served: int = 0
    in_flight: int = 0
    slow_latency: float = 0.0
    slow_until: float = 0.0  # time.monotonic() at which the fixed latency ends


@dataclass
class Backends:
    """What the ASGI app needs: the per-port state and how to draw a latency."""

    mode: str
    rng: random.Random
    instances: dict[int, Instance] = field(default_factory=dict)

    def latency(self, instance: Instance, now: float) -> float:
        if now < instance.slow_until:
            return instance.slow_latency
        if self.mode == "zero":
            return 0.0
        return max(0.0, self.rng.gauss(LINKERD_MEAN, LINKERD_SD))

    def stats(self, reset: bool) -> dict[str, Any]:
        now = time.monotonic()
        out = {
            str(p): {"served": i.served, "in_flight": i.in_flight, "slow": i.slow_until > now}
            for p, i in self.instances.items()
        }
        if reset:
            for i in self.instances.values():
                i.served = 0
        return {"instances": out, "in_flight": sum(i.in_flight for i in self.instances.values())}


async def _answer(send: Send, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def make_app(backends: Backends) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        instance = backends.instances.get(scope["server"][1])
        path = scope["path"]
        if instance is None:
            await _answer(send, 404, b"unknown port")
        elif path == "/work":
            instance.in_flight += 1
            try:
                delay = backends.latency(instance, time.monotonic())
                if delay > 0:
                    await asyncio.sleep(delay)
                instance.served += 1
                await _answer(send, 200, b"ok")
            finally:
                instance.in_flight -= 1
        elif path == "/_bench/slow" and scope["method"] == "POST":
            query = parse_qs(scope["query_string"].decode())
            target = backends.instances.get(int(query["port"][0]))
            if target is None:
                await _answer(send, 404, b"unknown port")
                return
            target.slow_latency = float(query["latency"][0])
            target.slow_until = time.monotonic() + float(query["seconds"][0])
            await _answer(send, 200, b"ok")
        elif path == "/_bench/stats":
            reset = "reset=1" in scope["query_string"].decode()
            body = json.dumps(backends.stats(reset)).encode()
            await _answer(send, 200, body, b"application/json")
        else:
            await _answer(send, 404, b"not found")

    return app


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(args: argparse.Namespace) -> None:
    socks = [_listen() for _ in range(args.count)]
    backends = Backends(args.latency, random.Random(args.seed))
    for s in socks:
        port = s.getsockname()[1]
        backends.instances[port] = Instance(port)
    config = uvicorn.Config(
        make_app(backends),
        lifespan="off",
        access_log=False,
        log_level="warning",
        http="httptools",
        timeout_keep_alive=60,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=socks))
    async with AsyncControlPlane(args.endpoints) as cp:
        holders = [
            RegistrationHolder(
                cp, args.service, f"{args.service}-{port}", address="127.0.0.1", port=port
            )
            for port in backends.instances
        ]
        tasks = [asyncio.create_task(h.run()) for h in holders]
        await asyncio.wait_for(asyncio.gather(*(h.registered.wait() for h in holders)), 30)
        ports = list(backends.instances)
        ready = {"ports": ports, "ids": [h.instance_id for h in holders]}
        print(READY + json.dumps(ready), flush=True)
        try:
            await serving  # until SIGTERM / SIGINT (uvicorn's handlers)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(h.deregister() for h in holders))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--count", type=int, default=11)
    parser.add_argument("--latency", choices=("linkerd", "zero"), default="linkerd")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args))
    except ImportError:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
