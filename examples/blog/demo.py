"""The blog, live: `python -m examples.blog.demo` (the main job of `make demo`).

Runs `shoal up examples/blog/shoal.yaml` -- an embedded single-member control plane, then
`users` (Flask) and `articles` (FastAPI) with two replicas each, and the gateway in front
of them (/users -> users, /articles -> articles) -- and, as an outside caller, sends
every call through the gateway, printing each as the `curl` line that does the same:

1. creates a user and an article through the services (articles checks the author
   through users with the SDK's client; an unknown author is refused with a clear 422);
2. shows discovery and balancing: which replica answered each call (the gateway's
   round robin, set by the manifest's `gateway.policy`);
3. changes a setting in the config center and shows it applied without a restart;
4. SIGKILLs a replica while calls go on: none fails (the gateway retries the one cut
   short on the other replica), the replica leaves the registry at once, and `shoal up`
   starts it again;
5. restarts a service rolling while calls go on: none fails;
6. runs a distributed job on a `shoal worker` registered in the same control plane;
7. prints the dashboard's URL (every member serves it at /ui/) and, when run from a
   terminal, keeps everything up until Ctrl-C so the dashboard can be looked at;
8. stops everything cleanly (every replica deregisters, drains and exits).

Everything the processes print goes to a log file (its path is printed).
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from shoal.cli.up.control import request
from shoal.client import ControlPlane
from shoal.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "shoal.yaml"


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def head(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Gateway:
    """Calls through the gateway, each shown as the `curl` line that makes it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def curl(self, method: str, path: str, body: dict[str, Any] | None = None) -> str:
        data = f" -H 'content-type: application/json' -d '{json.dumps(body)}'" if body else ""
        verb = "" if method == "GET" else f"-X {method} "
        return f"curl {verb}{shlex.quote(self.url + path)}{data}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.request(method, path, json=body)

    def show(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        say(f"$ {self.curl(method, path, body)}")
        return self.call(method, path, body)

    def close(self) -> None:
        self.http.close()


class Load:
    """Calls `fn` in a loop on a few threads, counting successes and failures."""

    def __init__(self, fn: object, threads: int = 3) -> None:
        self.fn, self.ok, self.failed = fn, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = self.fn()  # type: ignore[operator]
                with self._lock:
                    if status < 500:
                        self.ok += 1
                    else:
                        self.failed.append(f"status {status}")
            except httpx.HTTPError as error:
                with self._lock:
                    self.failed.append(f"{type(error).__name__}: {error}")
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def main() -> int:
    port, gateway_port = free_port(), free_port()
    endpoints = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="shoal-blog-") as tmp:
        data = Path(tmp)
        log_path = data / "up.log"
        head("The blog on shoal: users (Flask) and articles (FastAPI), two replicas each")
        shown = (
            MANIFEST.relative_to(Path.cwd()) if MANIFEST.is_relative_to(Path.cwd()) else MANIFEST
        )
        say(f"shoal up {shown}")
        say(
            f"(embedded control plane on {endpoints}, gateway on :{gateway_port}; "
            f"every process's output in {log_path})"
        )
        started = time.monotonic()
        with open(log_path, "wb") as log:
            up = subprocess.Popen(
                [
                    sys.executable, "-m", "shoal.cli.main", "up", str(MANIFEST),
                    "--control-port", str(port), "--data-dir", str(data),
                    "--gateway-port", str(gateway_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            return run(up, endpoints, f"http://127.0.0.1:{gateway_port}", data, started)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait(10)


def run(
    up: subprocess.Popen[bytes], endpoints: str, gateway_url: str, data: Path, started: float
) -> int:
    socket_path = data / "up.sock"

    def ps() -> dict[str, list[dict[str, object]]]:
        services: dict[str, list[dict[str, object]]] = request(socket_path, {"op": "ps"})[
            "services"
        ]
        return services

    def all_up() -> bool:
        if up.poll() is not None:
            raise RuntimeError(f"shoal up exited with {up.returncode}; see {data / 'up.log'}")
        try:
            replicas = [r for rs in ps().values() for r in rs]
        except OSError:
            return False
        # users x2, articles x2 and the gateway's one worker
        return len(replicas) == 5 and all(r["state"] == "up" for r in replicas)

    wait_for(all_up, 90, interval=0.1, what="the blog to come up")
    say(f"up in {time.monotonic() - started:.1f} s")
    with ControlPlane(endpoints) as cp:
        for service in ("users", "articles"):
            found = cp.registry.instances(service, healthy=True)
            where = ", ".join(f"{i.id} at {i.address}:{i.port}" for i in found.instances)
            say(f"registry: {service} -> {where}")
    say(f"gateway: {gateway_url} (/users -> users, /articles -> articles)")

    gw = Gateway(gateway_url)
    try:
        head("Create a user and an article, through the gateway")
        created = gw.show("POST", "/users", {"name": "Ada Lovelace"})
        ada = created.json()
        say(
            f"  -> {created.status_code}, id {ada['id']}, served by {ada['served_by']} "
            f"(x-request-id {created.headers.get('x-request-id')})"
        )
        new = {"author_id": ada["id"], "title": "Notes on the Engine"}
        article = gw.show("POST", "/articles", new)
        a = article.json()
        say(
            f"  -> {article.status_code}, article {a['id']} by {a['author']} "
            f"({a['served_by']} checked the author through {a['author_checked_by']})"
        )
        for title in ("On Bernoulli numbers", "A reply to Menabrea", "Poetical science"):
            gw.call("POST", "/articles", {"author_id": ada["id"], "title": title})
        refused = gw.show("POST", "/articles", {"author_id": 999, "title": "Ghost"})
        why = refused.json()["detail"]
        say(f"  -> {refused.status_code} {why}")
        listed = gw.show("GET", f"/users/{ada['id']}/articles").json()
        say(
            f"  -> {len(listed['articles'])} articles "
            f"({listed['served_by']} called {listed['articles_served_by']})"
        )
        missing = gw.show("GET", "/comments")
        say(f"  -> {missing.status_code} {missing.json()['message']} (the gateway's own answer)")

        head("Discovery and balancing: 20 calls to GET /users/1, round robin over the view")
        say(f"$ for i in $(seq 20); do {gw.curl('GET', '/users/1')}; done")
        counts = collections.Counter(
            gw.call("GET", "/users/1").json()["served_by"] for _ in range(20)
        )
        say(", ".join(f"{name}: {n}" for name, n in sorted(counts.items())))
        say(
            "(no control-plane call per request: the gateway watches the registry and picks "
            "locally)"
        )

        head("Hot reload: the page size of GET /articles comes from the config center")
        before = gw.call("GET", "/articles").json()["page_size"]
        with ControlPlane(endpoints) as cp:
            cp.config.publish("blog/articles", "page_size: 2\n", "yaml", message="demo")
        wait_for(lambda: gw.call("GET", "/articles").json()["page_size"] == 2, 20, what="reload")
        page = gw.call("GET", "/articles").json()
        say(f"page_size {before} -> {page['page_size']} after publishing blog/articles, no restart")
        say(f"GET /articles now lists {len(page['articles'])} per page")

        head("SIGKILL a replica of articles while calls go on")
        victim = next(r for r in ps()["articles"] if r["name"] == "articles-1")
        with Load(lambda: gw.call("GET", "/articles").status_code) as load:
            time.sleep(0.5)
            os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
            killed = time.monotonic()
            with ControlPlane(endpoints) as cp:
                wait_for(
                    lambda: (
                        "articles-1"
                        not in {i.id for i in cp.registry.instances("articles").instances}
                    ),
                    10,
                    interval=0.005,
                    what="articles-1 to leave the registry",
                )
                gone_ms = (time.monotonic() - killed) * 1000
            time.sleep(1.0)
        say(
            f"kill -9 articles-1 (pid {victim['pid']}): it left the registry {gone_ms:.0f} ms later"
        )
        say(f"{load.ok} calls during the kill answered, {len(load.failed)} failed")
        wait_for(lambda: all_up(), 30, interval=0.1, what="articles-1 to be restarted")
        again = next(r for r in ps()["articles"] if r["name"] == "articles-1")
        say(
            f"shoal up restarted articles-1 (now pid {again['pid']}, restarts: {again['restarts']})"
        )

        head("Rolling restart of articles while calls go on (`shoal restart articles`)")
        with Load(lambda: gw.call("GET", "/articles").status_code) as rolling:
            answer = request(data / "up.sock", {"op": "restart", "service": "articles"})
        say(f"replicas now: {', '.join(answer['replicas'])}")
        say(f"{rolling.ok} calls during it answered, {len(rolling.failed)} failed")
        failures = load.failed + rolling.failed

        head("A distributed job on a shoal worker (the job engine, same control plane)")
        run_job(endpoints, data)

        head("Try it yourself, through this run's gateway")
        say(gw.curl("POST", "/users", {"name": "Grace Hopper"}))
        say(gw.curl("POST", "/articles", {"author_id": 1, "title": "Nanoseconds"}))
        say(gw.curl("GET", "/users/1/articles"))
        say(gw.curl("GET", "/articles?author_id=1"))
        say(
            "(`shoal up examples/blog/shoal.yaml` alone: control plane :7700, gateway :8080; "
            "then `shoal ps -f examples/blog/shoal.yaml`, `shoal services`,"
        )
        say(" `shoal scale users=3 -f ...`, `shoal restart articles -f ...`)")
    finally:
        gw.close()

    head("The dashboard: every member serves it")
    say(f"open {endpoints}/ui/ -- members, services with live health, config, jobs")
    if sys.stdin.isatty():
        say("everything stays up until you press Ctrl-C")
        try:
            while up.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass

    head("Stop everything: Ctrl-C to shoal up")
    up.send_signal(signal.SIGINT)
    code = up.wait(60)
    say(f"every replica deregistered, drained and exited; shoal up exited with {code}")
    if failures:
        say(f"FAILED calls: {failures[:5]}")
        return 1
    return 0 if code == 0 else 1


def run_job(endpoints: str, data: Path) -> None:
    from examples.compute.sum import N, job

    with open(data / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoal.cli.main",
                "worker",
                "--server",
                endpoints,
                "--slots",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with ControlPlane(endpoints) as cp:
            wait_for(
                lambda: cp.registry.instances("shoal-workers").instances, 30, what="the worker"
            )
        started = time.monotonic()
        outcome = job.run("shoal", server=endpoints)
        took = time.monotonic() - started
        right = outcome.result == N * (N - 1) // 2
        say(
            f"sum of 0..{N - 1:,} over {len(outcome.report.tasks)} partitions in {took:.1f} s: "
            f"{outcome.result:,} ({'right' if right else 'WRONG'})"
        )
        say("recorded in the control plane: `shoal jobs`, and the dashboard's jobs page")
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


if __name__ == "__main__":
    raise SystemExit(main())
