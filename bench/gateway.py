"""The shoal gateway against nginx as a reverse proxy, over the same backend, in one run.

Both proxies run one worker process pinned to the server CPU, with access logs off and
keep-alive connections to the backend (nginx: `keepalive 64`, HTTP/1.1, Connection
cleared). The backend is a separate nginx answering a small fixed body; it, wrk and the
control plane share the load-generator CPU, the same for both systems. The gateway finds
the backend through the registry of a real `shoal server` (one plain record), so every
request goes through its full path: route match, a `CallPlan` over the `Upstream`
(balancer, breaker, outlier detector, retry budget), forwarding and trace headers.

Measured, per system, alternating trials (the machine is shared; each row keeps the
best trial, since noise only ever slows a run down):

* throughput: wrk, 1 thread, 64 connections; req/s, p50/p99, and the proxy's CPU time
  per request (user + system, from /proc), which does not depend on whether the proxy or
  the load generator ran out of CPU first -- on 2 cores wrk often does;
* added latency at ~1,000 req/s: wrk with 10 connections that each wait 10 ms between
  requests, minus the same run straight at the backend (p50 and p99);
* memory: the gateway's RSS sampled every 2 s under 64-connection load for
  `--soak-s` seconds (first and last third compared); with `--soak`, also one 200 MB
  download and one 200 MB upload through each proxy.

Goals (issue 11): throughput >= 0.6x nginx, p99 added < 1 ms at 1,000 req/s, memory flat.

    .venv/bin/python -m bench.gateway              # ~2 min
    .venv/bin/python -m bench.gateway --quick      # a smoke run (~30 s)
    .venv/bin/python -m bench.gateway --soak       # + a 5-minute soak and 200 MB bodies
    .venv/bin/python -m bench.gateway --ab main --only-throughput
        # + the gateway as of git ref `main`, a third system in the same trials: a change's
        #   effect on req/s and CPU/request, measured side by side on the same machine load
    .venv/bin/python -m bench.gateway --hot-path [--ab main] [--instructions]
        # the proxy's own Python work per request, in process (see `hot_path`)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from bench.harness import (
    Results,
    Settings,
    WrkResult,
    log,
    pick_cpus,
    raise_nofile,
    run_wrk,
    taskset,
    terminate,
)
from shoal.client import ControlPlane
from shoal.testing.processes import ServerProcess, free_port, wait_for

BODY = "hello from the backend\n"
BIG = 200 * 1024 * 1024


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if not missing:
        return
    log(f"missing {', '.join(missing)}: apt-get install -y nginx-light wrk")
    subprocess.run("apt-get update -qq", shell=True, check=True, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nginx-light", "wrk"],
        check=True,
        timeout=600,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )
    if shutil.which("nginx") is None and os.path.exists("/usr/sbin/nginx"):
        os.environ["PATH"] += ":/usr/sbin"
    still = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if still:
        raise SystemExit(f"still missing after apt-get: {', '.join(still)}")


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def _nginx_conf(root: Path, name: str, server: str, extra_http: str = "") -> Path:
    temp = root / f"{name}-tmp"
    temp.mkdir(parents=True, exist_ok=True)
    conf = root / f"{name}.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {root}/{name}.pid;
error_log {root}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 10000000;
  client_max_body_size 0;
  {extra_http}
  {server}
}}
"""
    )
    return conf


def start_nginx(root: Path, name: str, server: str, port: int, cpus: str | None,
                extra_http: str = "") -> Proc:  # fmt: skip
    conf = _nginx_conf(root, name, server, extra_http)
    popen = subprocess.Popen(
        [*taskset(cpus), "nginx", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(root / f"{name}.out").open("ab"),
    )
    proc = Proc(name, popen, port)
    wait_for(lambda: _up(port), 10, what=f"{name} on {port}")
    return proc


def _up(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500


def start_backend(root: Path, cpus: str | None) -> Proc:
    port = free_port()
    big = root / "static" / "big.bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    with big.open("wb") as f:
        f.truncate(BIG)  # sparse: 200 MB of zeros without writing them
    # nginx's workers drop root for www-data: let them read the file.
    for path in (root, big.parent):
        path.chmod(0o755)
    big.chmod(0o644)
    server = f"""
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location = /big.bin {{ root {big.parent}; }}
    location / {{ return 200 "{BODY.strip()}\\n"; }}
  }}"""
    return start_nginx(root, "backend", server, port, cpus)


def start_nginx_proxy(root: Path, backend: int, sink: int, cpus: str | None) -> Proc:
    port = free_port()
    upstream = (
        f"upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}\n"
        f"  upstream sink {{ server 127.0.0.1:{sink}; keepalive 8; }}"
    )
    server = f"""
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location /upload {{
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
    }}
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}"""
    proc = start_nginx(root, "nginx-proxy", server, port, cpus, upstream)
    return proc


def export_ref(root: Path, ref: str) -> Path:
    """The `shoal` package as of git `ref`, unpacked under `root` (for --ab)."""
    where = root / f"ref-{ref.replace('/', '_')}"
    where.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "shoal"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def start_gateway(
    root: Path, endpoints: str, cpus: str | None, *, name: str = "shoal", src: Path | None = None
) -> Proc:
    """The gateway; with `src`, the `shoal` package found there (another git ref)."""
    port, admin = free_port(), free_port()
    routes = root / "routes.yaml"
    policy = {"timeout": "60s", "attempt_timeout": "30s"}
    routes.write_text(
        yaml.safe_dump(
            {
                "defaults": {"max_body": "1GB", "policy": policy},
                "routes": [
                    {"prefix": "/", "service": "bench-backend", "name": "backend"},
                    {"prefix": "/upload", "service": "bench-sink", "name": "sink"},
                ],
            }
        )
    )
    cmd = [
        *taskset(cpus), sys.executable, "-m", "shoal.gateway",
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
        "--routes", str(routes), "--endpoints", endpoints, "--access-log", "off",
    ]  # fmt: skip
    # `python -m` puts the working directory first on sys.path: run from `src` so that
    # its package, not this checkout's, is the one imported.
    popen = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=(root / f"{name}.log").open("ab"),
        cwd=src or Path(__file__).resolve().parents[1],
    )
    proc = Proc(name, popen, port)
    wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text == BODY,
        20,
        what="the gateway routing to the backend",
    )
    return proc


def run_sink(port: int) -> None:
    """An upstream that reads whole request bodies (nginx's `return` would not) and
    answers with their length: the far end of the 200 MB upload."""
    import asyncio

    import httptools
    import uvloop

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.size = 0

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.size += len(body)

        def on_message_complete(self) -> None:
            answer = f"{self.size}\n".encode()
            self.size = 0
            head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(answer)
            self.transport.write(head + answer)  # type: ignore[attr-defined]

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


def start_sink(cpus: str | None) -> Proc:
    port = free_port()
    popen = subprocess.Popen(
        [*taskset(cpus), sys.executable, "-m", "bench.gateway", "--sink", str(port)],
        stdout=subprocess.DEVNULL,
    )
    proc = Proc("sink", popen, port)
    wait_for(lambda: _up(port), 10, what="the upload sink")
    return proc


# --------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (nginx's worker is one)."""
    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def throughput(settings: Settings, proc: Proc, connections: int = 64) -> tuple[WrkResult, float]:
    """wrk at `connections`; the result and the proxy's CPU microseconds per request."""
    before = cpu_seconds(proc.pid)
    result = run_wrk(
        settings, f"http://127.0.0.1:{proc.port}", "gateway_get.lua", ["/"], connections
    )
    used = cpu_seconds(proc.pid) - before
    return result, used / max(1, result.requests) * 1e6


def paced(settings: Settings, port: int) -> WrkResult:
    return run_wrk(
        settings, f"http://127.0.0.1:{port}", "gateway_paced.lua", ["/", "10"], connections=10
    )


def soak(settings: Settings, proc: Proc, seconds: int) -> tuple[list[float], WrkResult]:
    """RSS (MB) every 2 s while wrk runs `seconds` at 64 connections."""
    long_run = Settings(
        duration_s=seconds,
        failover_trials=0,
        watchers=0,
        server_cpus=settings.server_cpus,
        loadgen_cpus=settings.loadgen_cpus,
    )
    samples: list[float] = []
    ps = psutil.Process(proc.pid)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(_thread())
        future = pool.submit(
            run_wrk, long_run, f"http://127.0.0.1:{proc.port}", "gateway_get.lua", ["/"], 64
        )
        while not future.done():
            samples.append(ps.memory_info().rss / 1e6)
            time.sleep(2)
        return samples, future.result()


@contextlib.contextmanager
def _thread() -> Iterator[object]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        yield pool


def big_bodies(proc: Proc) -> tuple[float, float, float]:
    """(download MB/s, upload MB/s, RSS growth MB) for one 200 MB body each way."""
    ps = psutil.Process(proc.pid)
    before = ps.memory_info().rss
    peak = before
    base = f"http://127.0.0.1:{proc.port}"
    with httpx.Client(timeout=120) as client:
        started, size, digest = time.perf_counter(), 0, hashlib.sha256()
        with client.stream("GET", base + "/big.bin") as r:
            for chunk in r.iter_bytes(1 << 20):
                size += len(chunk)
                digest.update(chunk)
                peak = max(peak, ps.memory_info().rss) if size % (16 << 20) < (1 << 20) else peak
        down = size / 1e6 / (time.perf_counter() - started)
        if size != BIG:
            raise AssertionError(f"{proc.name}: downloaded {size} bytes, not {BIG}")

        def body() -> Iterator[bytes]:
            nonlocal peak
            block = b"u" * (1 << 20)
            for i in range(BIG >> 20):
                if i % 16 == 0:
                    peak = max(peak, ps.memory_info().rss)
                yield block

        started = time.perf_counter()
        r = client.post(base + "/upload", content=body())
        up = BIG / 1e6 / (time.perf_counter() - started)
        if r.status_code != 200 or r.text.strip() != str(BIG):
            raise AssertionError(f"{proc.name}: upload answered {r.status_code} {r.text!r}")
    return down, up, (peak - before) / 1e6


# --------------------------------------------------------------------------- in process

HOT_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
HOT_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 23\r\nConnection: keep-alive\r\n\r\n"
    + BODY.encode()
)


def hot_path(requests: int, repeats: int, dump: bool) -> None:
    """The gateway's hot path in one process, over fake transports on uvloop: 16 client
    connections each sending GETs back to back, the upstream answering from memory.

    No socket, no syscall, no other process: what is left is the proxy's own work per
    request (ClientConnection, Exchange, CallPlan, Upstream, the pool, the coalescer,
    the loop's callbacks). On a shared machine its CPU time still moves with the load;
    `dump` (under `valgrind --tool=callgrind`, with --instructions) asks callgrind to
    dump its counts before and after the measured requests, and instructions per
    request do not move at all: that is the number to compare two versions by.
    """
    import asyncio
    import random

    import uvloop

    from shoal.client import ServiceView
    from shoal.client.discovery import ServiceSnapshot
    from shoal.gateway.pool import ConnectionPool, UpstreamConnection
    from shoal.gateway.proxy import ClientConnection, ProxyContext
    from shoal.gateway.routes import parse_routes
    from shoal.gateway.runtime import UpstreamSet, compile_routing
    from shoal.registry import Instance
    from shoal.registry.discovery import ServiceSettings
    from shoal.registry.status import Health, HealthStatus
    from shoal.service.policy import ClientPolicy

    class Views(UpstreamSet):
        def view(self, service: str) -> ServiceView:  # no control plane: set by hand
            if service not in self._views:
                self._views[service] = ServiceView(None, service)  # type: ignore[arg-type]
            return self._views[service]

    class Transport:
        def __init__(self, on_write: object) -> None:
            self.on_write = on_write

        def write(self, data: bytes) -> None:
            self.on_write(data)  # type: ignore[operator]

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 40000)

        def set_write_buffer_limits(self, *_: object) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def close(self) -> None: ...
        def abort(self) -> None: ...

    async def run() -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(1)
        views = Views(None, rng)  # type: ignore[arg-type]
        policy = {"timeout": "60s", "attempt_timeout": "30s"}
        table = parse_routes(
            {"defaults": {"policy": policy}, "routes": [{"prefix": "/", "service": "b"}]},
            ClientPolicy(),
        )
        routing = compile_routing(table, views, "bench", None)
        health = Health(status=HealthStatus.PASSING, reason="", since=0.0)
        instance = Instance(
            service="b", id="b-1", address="127.0.0.1", port=9, health=health, registered_at=0
        )
        view = views.view("b")
        view.snapshot = ServiceSnapshot("b", 1, (instance,), ServiceSettings())
        for listener in list(view._listeners):
            listener(view.snapshot)
        pool = ConnectionPool(loop)
        ctx = ProxyContext(loop, routing, views, pool, None, rng)
        left = 0
        done: asyncio.Future[None] = loop.create_future()

        def answered(client: ClientConnection) -> object:
            def on_write(_: bytes) -> None:
                nonlocal left
                left -= 1
                if left > 0:
                    loop.call_soon(client.data_received, HOT_REQUEST)
                elif not done.done():
                    done.set_result(None)

            return on_write

        for _ in range(16):
            up = UpstreamConnection(pool, ("127.0.0.1", 9))
            up.connection_made(
                Transport(lambda _, up=up: loop.call_soon(up.data_received, HOT_RESPONSE))  # type: ignore[arg-type]
            )
            pool.release(up)
        clients = [ClientConnection(ctx) for _ in range(16)]
        for client in clients:
            client.connection_made(Transport(answered(client)))  # type: ignore[arg-type]

        async def burst() -> float:
            nonlocal left, done
            left, done = requests, loop.create_future()
            started = time.process_time()
            for client in clients:
                client.data_received(HOT_REQUEST)
            await done
            return (time.process_time() - started) / requests * 1e6

        await burst()  # warm
        if dump:
            me = str(os.getpid())
            subprocess.run(["callgrind_control", "-d", "before", me], capture_output=True)
            await burst()
            subprocess.run(["callgrind_control", "-d", "measured", me], capture_output=True)
            return
        times = sorted([await burst() for _ in range(repeats)])
        print(f"HOT {times[0]:.2f} {statistics.median(times):.2f}")

    uvloop.run(run())


def hot_path_of(src: Path | None, requests: int, repeats: int, instructions: bool) -> str:
    """`hot_path` in a child process with `src`'s shoal (None: this checkout's)."""
    repo = Path(__file__).resolve().parents[1]
    code = (
        f"import sys; sys.path[:0] = [{str(src or repo)!r}, {str(repo)!r}]; "
        f"from bench.gateway import hot_path; hot_path({requests}, {repeats}, {instructions})"
    )
    cmd = [sys.executable, "-c", code]
    if not instructions:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        best, median = out.split()[1:3]
        return f"{best} us/request (median {median}) of CPU time"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.%p", *cmd],
            capture_output=True,
            check=True,
        )
        measured = next(p for p in Path(tmp).iterdir() if p.name.endswith(".2"))
        line = next(ln for ln in measured.read_text().splitlines() if ln.startswith("totals:"))
        return f"{int(line.split()[1]) / requests:,.0f} instructions/request"


def run_hot_path(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="shoal-bench-hot-"))
    try:
        systems: dict[str, Path | None] = {"shoal": None}
        if args.ab:
            systems[args.ab] = export_ref(root, args.ab)
        # Alternating trials (CPU time) or one deterministic count each (instructions).
        requests = 2000 if args.instructions else 20000
        for _ in range(1 if args.instructions else args.trials):
            for name, src in systems.items():
                log(f"  {name}: {hot_path_of(src, requests, 7, args.instructions)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- the run


def best(results: list[tuple[WrkResult, float]]) -> tuple[WrkResult, float]:
    return max(results, key=lambda r: r[0].rps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--soak", action="store_true", help="5-minute soak, 200 MB bodies")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--soak-s", type=int, help="seconds of the memory run (60; --soak: 300)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--ab", metavar="REF", help="also run the gateway of git ref REF")
    parser.add_argument(
        "--only-throughput", action="store_true", help="skip the latency and memory runs"
    )
    parser.add_argument(
        "--hot-path", action="store_true", help="the proxy's work per request, in process"
    )
    parser.add_argument(
        "--instructions", action="store_true", help="with --hot-path: count under callgrind"
    )
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)  # the upload sink
    args = parser.parse_args(argv)
    if args.sink:
        run_sink(args.sink)
        return 0
    if args.hot_path:
        return run_hot_path(args)
    duration = 3 if args.quick else args.duration
    trials = 1 if args.quick else args.trials
    soak_s = args.soak_s or (300 if args.soak else 10 if args.quick else 60)
    signal.signal(signal.SIGTERM, terminate)
    ensure_tools()
    raise_nofile()
    server_cpus, loadgen_cpus = pick_cpus(not args.no_pin)
    settings = Settings(duration, 0, 0, server_cpus, loadgen_cpus)
    log(f"proxies on CPU {server_cpus}, backend + wrk + control plane on CPU {loadgen_cpus}")
    results = Results()
    procs: list[Proc] = []
    control: ServerProcess | None = None
    root = Path(tempfile.mkdtemp(prefix="shoal-bench-gateway-"))
    try:
        backend = start_backend(root, loadgen_cpus)
        procs.append(backend)
        control = ServerProcess("n1", root / "cp" / "data")
        control.extra = []
        control.start()
        control.wait_ready()
        sink = start_sink(loadgen_cpus)
        procs.append(sink)
        with ControlPlane(control.url) as cp:
            cp.registry.register("bench-backend", "nginx-1", address="127.0.0.1", port=backend.port)
            cp.registry.register("bench-sink", "sink-1", address="127.0.0.1", port=sink.port)
        nginx = start_nginx_proxy(root, backend.port, sink.port, server_cpus)
        gateway = start_gateway(root, control.url, server_cpus)
        procs += [nginx, gateway]
        systems = {"shoal": gateway, "nginx": nginx}
        if args.ab:
            other = start_gateway(
                root, control.url, server_cpus, name=args.ab, src=export_ref(root, args.ab)
            )
            procs.append(other)
            systems[args.ab] = other

        log(f"throughput: wrk -c64 -d{duration}s, {trials} alternating trial(s)")
        runs: dict[str, list[tuple[WrkResult, float]]] = {name: [] for name in systems}
        for _ in range(trials):
            for name, proc in systems.items():
                result, cpu = throughput(settings, proc)
                runs[name].append((result, cpu))
                log(
                    f"  {name}: {result.rps:,.0f} req/s p50 {result.p50_ms:.2f} ms "
                    f"p99 {result.p99_ms:.2f} ms, {cpu:.1f} us CPU/request{result.flag}"
                )
        for name in systems:
            result, cpu = best(runs[name])
            results.add("req/s (64 conns)", name, f"{result.rps:,.0f}{result.flag}", result.rps)
            results.add("p50 ms (64 conns)", name, f"{result.p50_ms:.2f}", result.p50_ms)
            results.add("p99 ms (64 conns)", name, f"{result.p99_ms:.2f}", result.p99_ms)
            low = min(c for _, c in runs[name])
            results.add("proxy CPU us/request", name, f"{low:.1f}", low)
            mid = statistics.median(c for _, c in runs[name])
            results.add("proxy CPU us/request, median", name, f"{mid:.1f}", mid)
        if not args.only_throughput:
            latency_and_memory(settings, systems, backend, trials, soak_s, args.soak, results)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if control is not None:
            control.kill()
    print_ratios(results, args.ab)
    shutil.rmtree(root, ignore_errors=True)
    return 0


def latency_and_memory(
    settings: Settings,
    systems: dict[str, Proc],
    backend: Proc,
    trials: int,
    soak_s: int,
    bodies: bool,
    results: Results,
) -> None:
    """Added latency at ~1,000 req/s, RSS over a soak, and (`bodies`) 200 MB each way."""
    log("latency at ~1,000 req/s (10 connections, 10 ms apart), added over direct")
    direct = [paced(settings, backend.port) for _ in range(trials)]
    base = min(direct, key=lambda r: r.p99_ms)
    log(f"  direct: {base.rps:,.0f} req/s p50 {base.p50_ms:.3f} ms p99 {base.p99_ms:.3f} ms")
    for name, proc in systems.items():
        run = min((paced(settings, proc.port) for _ in range(trials)), key=lambda r: r.p99_ms)
        add50, add99 = run.p50_ms - base.p50_ms, run.p99_ms - base.p99_ms
        log(
            f"  {name}: {run.rps:,.0f} req/s p50 {run.p50_ms:.3f} ms p99 {run.p99_ms:.3f} ms"
            f" (+{add50:.3f} / +{add99:.3f}){run.flag}"
        )
        results.add("added p50 ms @1k req/s", name, f"{add50:.3f}", add50)
        results.add("added p99 ms @1k req/s", name, f"{add99:.3f}", add99)

    log(f"memory: RSS under 64-connection load for {soak_s} s")
    for name, proc in systems.items():
        samples, run = soak(settings, proc, soak_s)
        third = max(1, len(samples) // 3)
        first, last = max(samples[:third]), max(samples[-third:])
        log(
            f"  {name}: RSS {samples[0]:.1f} -> {samples[-1]:.1f} MB (max first third "
            f"{first:.1f}, last third {last:.1f}); {run.rps:,.0f} req/s{run.flag}"
        )
        results.add("RSS MB, soak end", name, f"{samples[-1]:.1f}", samples[-1])
        results.add("RSS growth MB (thirds)", name, f"{last - first:+.1f}", last - first)

    if bodies:
        log("200 MB download and upload through each proxy")
        for name, proc in systems.items():
            try:
                down, up, grown = big_bodies(proc)
            except (AssertionError, httpx.HTTPError) as error:
                log(f"  {name}: FAILED {error}")
                results.add("200 MB down MB/s", name, "FAILED", None)
                continue
            log(f"  {name}: down {down:.0f} MB/s, up {up:.0f} MB/s, RSS +{grown:.1f} MB")
            results.add("200 MB down MB/s", name, f"{down:.0f}", down)
            results.add("200 MB up MB/s", name, f"{up:.0f}", up)
            results.add("RSS growth MB, 200 MB bodies", name, f"{grown:+.1f}", grown)


def print_ratios(results: Results, other: str | None = None) -> None:
    """The table; with `other` (--ab), its column and the ratios shoal/other and
    other/nginx too."""

    def ratio(metric: str, a: str, b: str) -> str:
        x, y = results.value(metric, a), results.value(metric, b)
        if x is None or y in (None, 0):
            return ""
        if metric.startswith("proxy CPU"):
            return f"{y / x:.2f}x" if x else ""  # efficiency: b's cost over a's
        return f"{x / y:.2f}x"

    systems = ["shoal", "nginx"] + ([other] if other else [])
    pairs = [("shoal", "nginx")] + ([(other, "nginx"), ("shoal", other)] if other else [])
    rows = [("metric", *systems, *(f"{a}/{b}" for a, b in pairs))]
    for metric in results.order:
        cells = results.rows[metric]
        shown = (cells.get(name, ("-",))[0] for name in systems)
        rows.append((metric, *shown, *(ratio(metric, a, b) for a, b in pairs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print("(req/s: a/b; CPU us/request: b/a, i.e. throughput per CPU;")
    print(" latency rows: ms added over calling the backend directly)")


if __name__ == "__main__":
    raise SystemExit(main())
