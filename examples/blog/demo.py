"""The blog, live: `python -m examples.blog.demo` (the main job of `make demo`).

Runs `shoal up examples/blog/shoal.yaml` -- an embedded single-member control plane, then
`users` (Flask) and `articles` (FastAPI) with two replicas each -- and, as an outside
caller using the same SDK client the services use:

1. creates a user and an article through the services (articles checks the author
   through users; an unknown author is refused with a clear 422);
2. shows discovery and balancing: which replica answered each call;
3. changes a setting in the config center and shows it applied without a restart;
4. SIGKILLs a replica while calls go on: none fails, the replica leaves the registry
   at once, and `shoal up` starts it again;
5. restarts a service rolling while calls go on: none fails;
6. runs a distributed job on a `shoal worker` registered in the same control plane;
7. prints the dashboard's URL (every member serves it at /ui/) and, when run from a
   terminal, keeps everything up until Ctrl-C so the dashboard can be looked at;
8. stops everything cleanly (every replica deregisters, drains and exits).

Everything the processes print goes to a log file (its path is printed).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from shoal.cli.up.control import request
from shoal.client import ControlPlane
from shoal.service import CallError, ClientPolicy, ServiceClient
from shoal.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "shoal.yaml"


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def head(text: str) -> None:
    print(f"\n== {text}", flush=True)


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
            except CallError as error:
                with self._lock:
                    self.failed.append(error.message)
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
    port = free_port()
    endpoints = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="shoal-blog-") as tmp:
        data = Path(tmp)
        log_path = data / "up.log"
        head("The blog on shoal: users (Flask) and articles (FastAPI), two replicas each")
        shown = (
            MANIFEST.relative_to(Path.cwd()) if MANIFEST.is_relative_to(Path.cwd()) else MANIFEST
        )
        say(f"shoal up {shown}")
        say(f"(embedded control plane on {endpoints}; every process's output in {log_path})")
        started = time.monotonic()
        with open(log_path, "wb") as log:
            up = subprocess.Popen(
                [
                    sys.executable, "-m", "shoal.cli.main", "up", str(MANIFEST),
                    "--control-port", str(port), "--data-dir", str(data),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            return run(up, endpoints, data, started)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait(10)


def run(up: subprocess.Popen[bytes], endpoints: str, data: Path, started: float) -> int:
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
        return len(replicas) == 4 and all(r["state"] == "up" for r in replicas)

    wait_for(all_up, 90, interval=0.1, what="the blog to come up")
    say(f"up in {time.monotonic() - started:.1f} s")
    with ControlPlane(endpoints) as cp:
        for service in ("users", "articles"):
            found = cp.registry.instances(service, healthy=True)
            where = ", ".join(f"{i.id} at {i.address}:{i.port}" for i in found.instances)
            say(f"registry: {service} -> {where}")

    even = ClientPolicy(balancer="round_robin")
    users = ServiceClient("users", endpoints=endpoints, policy=even)
    articles = ServiceClient("articles", endpoints=endpoints, policy=even)
    try:
        head("Create a user and an article through the services")
        ada = users.post("/users", json={"name": "Ada Lovelace"}).json()
        say(f"POST users /users (Ada Lovelace) -> id {ada['id']}, served by {ada['served_by']}")
        article = articles.post(
            "/articles", json={"author_id": ada["id"], "title": "Notes on the Engine"}
        )
        a = article.json()
        say(
            f"POST articles /articles -> {article.status_code}, article {a['id']} by {a['author']} "
            f"({a['served_by']} checked the author through {a['author_checked_by']})"
        )
        for title in ("On Bernoulli numbers", "A reply to Menabrea", "Poetical science"):
            articles.post("/articles", json={"author_id": ada["id"], "title": title})
        refused = articles.post("/articles", json={"author_id": 999, "title": "Ghost"})
        why = refused.json()["detail"]
        say(f"POST articles /articles for author 999 -> {refused.status_code} {why}")
        listed = users.get(f"/users/{ada['id']}/articles").json()
        say(
            f"GET users /users/{ada['id']}/articles -> {len(listed['articles'])} articles "
            f"({listed['served_by']} called {listed['articles_served_by']})"
        )

        head("Discovery and balancing: 20 calls to GET /users/1, round robin over the view")
        counts = collections.Counter(users.get("/users/1").json()["served_by"] for _ in range(20))
        say(", ".join(f"{name}: {n}" for name, n in sorted(counts.items())))
        say(
            "(no control-plane call per request: the client watches the registry and picks locally)"
        )

        head("Hot reload: the page size of GET /articles comes from the config center")
        before = articles.get("/articles").json()["page_size"]
        with ControlPlane(endpoints) as cp:
            cp.config.publish("blog/articles", "page_size: 2\n", "yaml", message="demo")
        wait_for(lambda: articles.get("/articles").json()["page_size"] == 2, 20, what="reload")
        page = articles.get("/articles").json()
        say(f"page_size {before} -> {page['page_size']} after publishing blog/articles, no restart")
        say(f"GET /articles now lists {len(page['articles'])} per page")

        head("SIGKILL a replica of articles while calls go on")
        victim = next(r for r in ps()["articles"] if r["name"] == "articles-1")
        with Load(lambda: articles.get("/articles").status_code) as load:
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
        with Load(lambda: articles.get("/articles").status_code) as rolling:
            answer = request(data / "up.sock", {"op": "restart", "service": "articles"})
        say(f"replicas now: {', '.join(answer['replicas'])}")
        say(f"{rolling.ok} calls during it answered, {len(rolling.failed)} failed")
        failures = load.failed + rolling.failed

        head("A distributed job on a shoal worker (the job engine, same control plane)")
        run_job(endpoints, data)

        head("Try it yourself: `shoal up examples/blog/shoal.yaml`, then, in another shell")
        say("export SHOAL_ENDPOINTS=http://127.0.0.1:7700")
        say('shoal call users POST /users -d \'{"name": "Grace Hopper"}\'')
        say('shoal call articles POST /articles -d \'{"author_id": 1, "title": "Nanoseconds"}\'')
        say("shoal call users GET /users/1/articles")
        say("shoal services; shoal service show articles; shoal ps -f examples/blog/shoal.yaml")
        say("shoal config put blog/articles page.yaml")
        say("shoal scale users=3 -f examples/blog/shoal.yaml; shoal restart articles -f ...")
        say("(the gateway, when it exists, will give these curl URLs)")
    finally:
        users.close()
        articles.close()

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
