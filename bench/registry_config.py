"""shoal's service registry and config center, with etcd as the reference, in one invocation.

Servers are real processes on loopback (ports from the kernel), fsync on, default settings;
the processes, wrk runner, CPU pinning, raw-asyncio watch client and table are
bench/harness.py's, shared with bench/control_plane.py. Load comes from `wrk` with the Lua
scripts in bench/lua/; the rest is small clients in this process (and child processes for
the failure-detection sources).

* registration: wrk PUT /api/v1/services/bench/instances/<new id> {address, port, tags},
  64 connections, 1 and 3 members (on the leader); etcd: a put of the same JSON under a
  prefix. The stored count must be at least the 2xx count, or the benchmark fails;
* discovery: wrk GET /api/v1/services/disc/instances?healthy=true with 100 instances,
  linearizable and stale (the endpoint's `consistency` parameter); etcd: a range over a
  prefix holding the same 100 JSON values (serializable for stale);
* failure detection on one member, per source: a keep-alive stream holder SIGKILLed ->
  the delete event on a service watch; a TTL 1s instance that stops heartbeating -> the
  delete event (the delay past the TTL, counted from when the last heartbeat was sent);
  an HTTP check (interval 250ms, timeout 200ms, fall 2) whose service is SIGKILLed -> the
  `critical` event;
* config fan-out: N SSE watchers on /api/v1/config/bench/app/watch, 20 publishes 100 ms
  apart, the delay from just before each publish to its arrival at each watcher; etcd:
  the same number of watchers on one key, 20 puts to it;
* heartbeat load (the issue's question): a fleet of 10,000 instances, each registering
  with a 3s TTL check and then heartbeating once a second (wrk with shoal_fleet.lua:
  registrations as fast as taken, due heartbeats first, then heartbeats paced at
  10,000/s; a leader that cannot answer that many never finishes registering them: how
  many it did is the fleet it sustains); over a 10 s window of paced heartbeats, the
  leader's CPU share (from /proc/PID/stat), the 2xx rate it answered, and how many
  instances expired. Then the registered ids heartbeated unpaced (wrk -c16) for 5 s:
  the most heartbeats/s the leader answers and its CPU % per 10k heartbeats/s.

On a 2-core machine the servers are pinned to CPU 0 and the load generators to CPU 1.
The machine is shared and noisy: read the ratios, not the absolute numbers.

    .venv/bin/python -m bench.registry_config            # the full run (~3-4 min)
    .venv/bin/python -m bench.registry_config --quick    # a smoke run (< 90 s)
    .venv/bin/python -m bench.registry_config --only heartbeat --members 1   # one step
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import (
    Etcd,
    Member,
    Results,
    Settings,
    Shoal,
    System,
    WatchConnection,
    WrkResult,
    b64,
    collect_logs,
    ensure_tools,
    log,
    percentile,
    pick_cpus,
    prefix_end,
    raise_nofile,
    report_fanout,
    run_wrk,
    running,
    taskset,
    terminate,
    warm_up,
)
from bench.open_loop import run_loop
from shoal.testing import HttpService
from shoal.testing.processes import wait_for

INSTANCE = {"address": "10.0.0.1", "port": 8080, "tags": ["bench", "v1"]}
DISCOVERY_INSTANCES = 100
FANOUT_PUBLISHES = 20
FANOUT_SPACING_S = 0.1
HEARTBEAT_TTL = "3s"
FLEET_PERIOD_MS = 1000  # each instance heartbeats once a second (the load)
FLEET_CONNECTIONS = 32
FLEET_MIN_REGISTRATIONS_PER_S = 300  # sizes the registration budget of the fleet run
FLEET_SETTLE_S = 2
HEARTBEAT_MAX_S = 5
GOAL_DETECTION_S = 1.0


KEEPALIVE_HOLDER = """
import sys, httpx
with httpx.stream("GET", sys.argv[1], timeout=None, follow_redirects=True) as r:
    assert r.status_code == 200, r.read()
    for line in r.iter_lines():
        if line.startswith("event: keepalive"):
            print("ready", flush=True)
"""


@dataclass(frozen=True, slots=True)
class Plan:
    settings: Settings
    trials: int
    heartbeat_instances: int
    heartbeat_s: int


# --------------------------------------------------------------------------- helpers


def _ok(r: httpx.Response) -> dict[str, Any]:
    if r.status_code != 200:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
    body: dict[str, Any] = r.json()
    return body


def _add_wrk(results: Results, metric: str, system: str, r: WrkResult) -> None:
    results.add(f"{metric} req/s", system, f"{r.rps:,.0f}{r.flag}", r.rps)
    results.add(f"{metric} p99 ms", system, f"{r.p99_ms:.2f}", r.p99_ms)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def _summary(values_ms: list[float]) -> str:
    return (
        f"p50 {percentile(values_ms, 0.5):.0f} / p99 {percentile(values_ms, 0.99):.0f} / "
        f"max {max(values_ms):.0f}"
    )


# --------------------------------------------------------------------------- registration


def bench_registration(system: System, size: int, results: Results) -> None:
    leader = system.leader()
    run = uuid.uuid4().hex[:6]
    if isinstance(system, Shoal):
        ids = f"r{size}m-{run}-"
        r = run_wrk(system.settings, leader.url, "shoal_register.lua", ["bench", ids], 64)
        stored = system.count_prefix(leader, f"/registry/services/bench/instances/{ids}")
    else:
        prefix = f"/registry/bench/r{size}m-{run}-"
        r = run_wrk(system.settings, leader.url, "etcd_put_instance.lua", [prefix], 64)
        stored = system.count_prefix(leader, prefix)
    log(
        f"  {system.name} {size}m registrations c=64 -> {leader.name}: {r.rps:,.0f}/s "
        f"p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms, {r.ok} 2xx, {stored} stored{r.flag}"
    )
    if stored < r.ok:
        raise AssertionError(f"{system.name}: {r.ok} registrations acknowledged, {stored} stored")
    _add_wrk(results, f"register {size}m c=64", system.name, r)


# --------------------------------------------------------------------------- discovery


def bench_discovery(system: System, size: int, results: Results) -> None:
    leader = system.leader()
    run = uuid.uuid4().hex[:6]
    value = json.dumps(INSTANCE)
    with httpx.Client(timeout=5) as client:
        for i in range(DISCOVERY_INSTANCES):
            if isinstance(system, Shoal):
                path = f"/api/v1/services/disc-{run}/instances/i{i}"
                _ok(client.put(leader.url + path, json=INSTANCE))
            else:
                body = {"key": b64(f"/disc/{run}/i{i}"), "value": b64(value)}
                _ok(client.post(leader.url + "/v3/kv/put", json=body))
    system.wait_converged()
    for consistency in ("linearizable", "stale"):
        if isinstance(system, Shoal):
            path = f"/api/v1/services/disc-{run}/instances?healthy=true&consistency={consistency}"
            check = _ok(httpx.get(leader.url + path, timeout=5))
            if len(check["instances"]) != DISCOVERY_INSTANCES:
                raise AssertionError(f"discovery returned {len(check['instances'])} instances")
            r = run_wrk(system.settings, leader.url, "shoal_discover.lua", [path], 64)
        else:
            prefix = f"/disc/{run}/"
            args = [b64(prefix), prefix_end(prefix), consistency]
            r = run_wrk(system.settings, leader.url, "etcd_range_prefix.lua", args, 64)
        log(
            f"  {system.name} {size}m discovery {consistency} c=64 -> {leader.name}: "
            f"{r.rps:,.0f}/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms{r.flag}"
        )
        _add_wrk(results, f"discover {consistency} {size}m c=64", system.name, r)


# --------------------------------------------------------------------------- detection


class ServiceWatch:
    """A service's SSE watch read in a thread; (arrival time, event) per data line."""

    def __init__(self, url: str, service: str) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.connected = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(f"{url}/api/v1/services/{service}/watch",), daemon=True
        )
        self._thread.start()
        if not self.connected.wait(10):
            raise TimeoutError(f"watch of {service} did not connect")

    def _run(self, url: str) -> None:
        try:
            with httpx.stream("GET", url, timeout=None) as r:
                for line in r.iter_lines():
                    if line.startswith(": watching"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        self.events.append((time.perf_counter(), json.loads(line[6:])))
        except httpx.HTTPError:
            pass  # the server is killed at the end

    def first(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> float:
        def found() -> float | None:
            return next((t for t, e in list(self.events) if predicate(e)), None)

        return wait_for(found, timeout, interval=0.002, what="a watch event")


def _child(args: list[str], cpus: str | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*taskset(cpus), sys.executable, *args], **kwargs)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _gone(iid: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "delete" and e.get("id") == iid


def trial_keepalive(m: Member, watch: ServiceWatch, i: int, cpus: str | None) -> float:
    lease = _ok(httpx.post(m.url + "/api/v1/leases", json={"ttl": 30}, timeout=5))["id"]
    iid = f"ka{i}"
    body = {**INSTANCE, "lease": lease}
    _ok(httpx.put(f"{m.url}/api/v1/services/det-ka/instances/{iid}", json=body, timeout=5))
    url = f"{m.url}/api/v1/leases/{lease}/keepalive-stream"
    holder = _child(["-c", KEEPALIVE_HOLDER, url], cpus, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != b"ready":
            raise RuntimeError("the keep-alive holder did not start")
        killed = time.perf_counter()
        os.kill(holder.pid, signal.SIGKILL)
        return watch.first(_gone(iid)) - killed
    finally:
        _kill(holder)


def trial_ttl(m: Member, watch: ServiceWatch, i: int) -> float:
    """Seconds past the 1 s TTL, from when the last heartbeat was sent to the delete."""
    iid = f"ttl{i}"
    base = f"{m.url}/api/v1/services/det-ttl/instances/{iid}"
    body = {**INSTANCE, "check": {"type": "ttl", "ttl": "1s"}}
    _ok(httpx.put(base, json=body, timeout=5))
    last = 0.0
    with httpx.Client(timeout=2) as client:
        for _ in range(3):
            last = time.perf_counter()
            _ok(client.put(base + "/heartbeat"))
            time.sleep(0.3)
    return watch.first(_gone(iid)) - last - 1.0


def trial_http(m: Member, watch: ServiceWatch, i: int, cpus: str | None) -> float:
    service = HttpService(prefix=taskset(cpus))
    port = service.port
    try:
        iid = f"http{i}"
        check = {"type": "http", "path": "/healthz", "interval": "250ms", "timeout": "200ms"}
        body = {"address": "127.0.0.1", "port": port, "check": {**check, "fall": 2, "rise": 1}}
        _ok(httpx.put(f"{m.url}/api/v1/services/det-http/instances/{iid}", json=body, timeout=5))

        def status(e: dict[str, Any], want: str) -> bool:
            inst = e.get("instance") or {}
            return bool(
                e["type"] == "put"
                and e.get("id") == iid
                and inst.get("health", {}).get("status") == want
            )

        watch.first(lambda e: status(e, "passing"))
        time.sleep(0.3)
        killed = time.perf_counter()
        service.stop()
        told = watch.first(lambda e: status(e, "critical")) - killed
        httpx.delete(f"{m.url}/api/v1/services/det-http/instances/{iid}", timeout=5)
        return told
    finally:
        service.stop()


def bench_detection(system: System, plan: Plan, results: Results) -> list[tuple[str, float]]:
    m = system.leader()
    cpus = plan.settings.loadgen_cpus
    watches = {name: ServiceWatch(m.url, f"det-{name}") for name in ("ka", "ttl", "http")}
    sources: list[tuple[str, str, Callable[[int], float]]] = [
        ("keep-alive stream SIGKILL -> gone", "ka",
         lambda i: trial_keepalive(m, watches["ka"], i, cpus)),
        ("TTL 1s silent -> gone, past TTL", "ttl",
         lambda i: trial_ttl(m, watches["ttl"], i)),
        ("HTTP check 250ms x2 -> critical", "http",
         lambda i: trial_http(m, watches["http"], i, cpus)),
    ]  # fmt: skip
    worst: list[tuple[str, float]] = []
    for label, _, trial in sources:
        delays = [trial(i) * 1000 for i in range(plan.trials)]
        log(f"  shoal detection {label}: {', '.join(f'{d:.0f}' for d in delays)} ms")
        metric = f"detect {label} ms (n={plan.trials})"
        results.add(metric, "shoal", _summary(delays), None)
        worst.append((label, max(delays)))
    return worst


# --------------------------------------------------------------------------- config fan-out


async def _fanout(system: System, m: Member, watchers: int) -> tuple[list[float], int]:
    run = uuid.uuid4().hex[:6]
    texts = [f"pub-{run}-{i:04d}." for i in range(FANOUT_PUBLISHES)]
    host = m.url.removeprefix("http://")
    port = int(m.url.rsplit(":", 1)[1])
    if isinstance(system, Shoal):
        item = f"/api/v1/config/bench/app-{run}"
        _ok(httpx.put(m.url + item, json={"content": "initial", "format": "text"}, timeout=5))
        request = (
            f"GET {item}/watch HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        markers = [t.encode() for t in texts]
        ready = b": watching"
    else:
        key = f"/config/bench/app-{run}"
        body = json.dumps({"create_request": {"key": b64(key)}}).encode()
        request = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        markers = [f'"value":"{b64(t)}"'.encode() for t in texts]
        ready = b'"created":true'
    loop = asyncio.get_running_loop()
    conns: list[WatchConnection] = []

    async def connect() -> None:
        conn = WatchConnection(request, ready, markers)
        await loop.create_connection(lambda: conn, "127.0.0.1", port)
        conns.append(conn)

    try:
        for i in range(0, watchers, 50):
            await asyncio.gather(*(connect() for _ in range(min(50, watchers - i))))
        deadline = time.monotonic() + 60
        while not all(c.ready for c in conns):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(not c.ready for c in conns)} watchers never started")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        sent: list[float] = []
        async with httpx.AsyncClient(timeout=5) as client:
            await warm_up(system, client, m)
            for text in texts:
                t0 = time.perf_counter()
                sent.append(t0)
                if isinstance(system, Shoal):
                    r = await client.put(m.url + item, json={"content": text, "format": "text"})
                else:
                    r = await client.post(
                        m.url + "/v3/kv/put", json={"key": b64(key), "value": b64(text)}
                    )
                _ok(r)
                await asyncio.sleep(max(0.0, t0 + FANOUT_SPACING_S - time.perf_counter()))
        deadline = time.monotonic() + 10
        while any(c.next < len(texts) and not c.closed for c in conns):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        delays = [(t - sent[i]) * 1000 for c in conns for i, t in enumerate(c.times)]
        return delays, watchers * len(texts) - len(delays)
    finally:
        for c in conns:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0.1)


def bench_fanout(system: System, results: Results) -> None:
    n = system.settings.watchers
    delays, missing = run_loop(_fanout(system, system.leader(), n))
    what = f"config fan-out 1m, {n} watchers x {FANOUT_PUBLISHES} publishes"
    report_fanout(system, results, f"config fan-out {n} watchers", what, delays, missing)


# --------------------------------------------------------------------------- heartbeats


def _services_requests(url: str) -> dict[str, float]:
    """The member's count of answered /api/v1/services/... requests, by status."""
    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("shoal_http_requests_total{") and '"/api/v1/services"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = out.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@dataclass(frozen=True, slots=True)
class FleetRun:
    wrk: WrkResult
    registered: int
    register_errors: int
    beats: int
    beat_errors: int
    lag_ms: float
    registered_after_s: float


def _run_fleet(
    settings: Settings, url: str, args: list[str], connections: int, duration_s: int
) -> FleetRun:
    """wrk with shoal_fleet.lua; like `run_wrk`, plus the script's FLEETJSON counters."""
    cmd = [
        *taskset(settings.loadgen_cpus), "wrk",
        "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s",
        "-s", str(harness.LUA_DIR / "shoal_fleet.lua"), url, "--", *args,
    ]  # fmt: skip
    env = dict(os.environ, BENCH_LUA_DIR=str(harness.LUA_DIR))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    lines = {
        ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.stdout.splitlines() if " " in ln
    }
    if "WRKJSON" not in lines or "FLEETJSON" not in lines:
        raise RuntimeError(f"no WRKJSON/FLEETJSON in wrk output:\n{out.stdout}\n{out.stderr}")
    d, f = json.loads(lines["WRKJSON"]), json.loads(lines["FLEETJSON"])
    wrk = WrkResult(
        requests=d["requests"],
        duration_s=d["duration_us"] / 1e6,
        status_errors=d["status_errors"],
        socket_errors=d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"],
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
    )
    return FleetRun(
        wrk=wrk,
        registered=f["registered"],
        register_errors=f["register_errors"],
        beats=f["beats"],
        beat_errors=f["beat_errors"],
        lag_ms=f["lag_ms"],
        registered_after_s=f["registered_after_ms"] / 1000,
    )


def bench_heartbeats(system: System, plan: Plan, results: Results) -> None:
    """The issue's question: 10,000 TTL instances each heartbeating once a second -- what
    share of a CPU does the leader spend on it, and does any instance expire? Then the
    most heartbeats/s the leader answers (unpaced), to see the headroom."""
    m = system.leader()
    assert m.pid is not None
    service = f"hb-{uuid.uuid4().hex[:6]}"
    n = plan.heartbeat_instances
    hz = os.sysconf("SC_CLK_TCK")
    prefix = f"/registry/services/{service}/instances/"
    # Registrations are sent as fast as they are taken (interleaved with the heartbeats
    # of those already registered); the measured window starts once the budget for that
    # is over, so it sees only paced heartbeats.
    reg_budget = max(5, -(-n // FLEET_MIN_REGISTRATIONS_PER_S))
    duration = reg_budget + FLEET_SETTLE_S + plan.heartbeat_s + 1
    args = [service, "h", str(n), HEARTBEAT_TTL, str(FLEET_PERIOD_MS)]
    fleet: list[FleetRun] = []
    runner = threading.Thread(
        target=lambda: fleet.append(
            _run_fleet(plan.settings, m.url, args, FLEET_CONNECTIONS, duration)
        ),
        daemon=True,
    )
    started = time.perf_counter()
    runner.start()
    time.sleep(max(0.0, started + reg_budget + FLEET_SETTLE_S - time.perf_counter()))
    live_start = system.count_prefix(m, prefix)
    cpu0, req0, t0 = _cpu_ticks(m.pid), _services_requests(m.url), time.perf_counter()
    time.sleep(plan.heartbeat_s)
    cpu1, req1, t1 = _cpu_ticks(m.pid), _services_requests(m.url), time.perf_counter()
    runner.join(duration + 90)
    if not fleet:
        raise RuntimeError("the fleet wrk run did not finish")
    f = fleet[0]
    window = t1 - t0
    cpu_pct = (cpu1 - cpu0) / hz / window * 100
    ok_rate = (req1.get("200", 0) - req0.get("200", 0)) / window
    fleet_per_10k = cpu_pct / (ok_rate / 10_000) if ok_rate else float("nan")
    bad = sum(v - req0.get(k, 0) for k, v in req1.items() if k != "200")
    late = f.registered_after_s > reg_budget or f.registered < n
    live_end = system.count_prefix(m, prefix)
    expired = f.registered - live_end  # each id is registered once
    log(
        f"  shoal fleet of {n:,} TTL {HEARTBEAT_TTL} instances x 1 heartbeat/"
        f"{FLEET_PERIOD_MS} ms (wrk c={FLEET_CONNECTIONS}): {f.registered:,} registered, the "
        f"last after {f.registered_after_s:.1f} s{' [!late or incomplete]' if late else ''}; "
        f"over {window:.1f} s: {ok_rate:,.0f} 2xx/s, {bad:.0f} non-2xx, leader CPU "
        f"{cpu_pct:.0f}% ({fleet_per_10k:.0f}% per 10k/s), pacing lag max {f.lag_ms:.0f} ms; "
        f"{live_start:,} live at the "
        f"window's start, {live_end:,} at the end; {f.beat_errors} heartbeats 404 "
        f"(expired), {f.register_errors} registrations failed{f.wrk.flag}"
    )
    hb_settings = dataclasses.replace(plan.settings, duration_s=HEARTBEAT_MAX_S)
    cpu2, t2 = _cpu_ticks(m.pid), time.perf_counter()
    # Over the ids registered (h0.. in order): unregistered ones would only measure 404s.
    ids = str(max(1, f.registered))
    r = run_wrk(hb_settings, m.url, "shoal_heartbeat.lua", [service, "h", ids], 16)
    cpu3, t3 = _cpu_ticks(m.pid), time.perf_counter()
    max_cpu = (cpu3 - cpu2) / hz / (t3 - t2) * 100
    max_rate = r.ok / r.duration_s if r.duration_s else 0.0
    per_10k = max_cpu / (r.rps / 10_000) if r.rps else float("nan")  # 404s included
    log(
        f"  shoal heartbeats unpaced c=16 over {ids} ids for {HEARTBEAT_MAX_S} s: "
        f"{max_rate:,.0f} 2xx/s p99 {r.p99_ms:.2f} ms, leader CPU {max_cpu:.0f}% -> "
        f"{per_10k:.0f}% per 10k/s{r.flag}"
    )
    label = f"{n:,} TTL instances x 1 beat/s"
    results.add(
        f"{label}: registered (last after s)",
        "shoal",
        f"{f.registered:,} ({f.registered_after_s:.1f})",
        None,
    )
    results.add(f"{label}: 2xx/s", "shoal", f"{ok_rate:,.0f}", ok_rate)
    results.add(f"{label}: leader CPU %", "shoal", f"{cpu_pct:.0f}", cpu_pct)
    results.add(f"{label}: leader CPU % per 10k/s", "shoal", f"{fleet_per_10k:.0f}", fleet_per_10k)
    results.add(f"{label}: expired", "shoal", f"{expired:,}", float(expired))
    results.add("heartbeats unpaced c=16 2xx/s", "shoal", f"{max_rate:,.0f}{r.flag}", max_rate)
    results.add("heartbeat CPU % per 10k/s (unpaced)", "shoal", f"{per_10k:.0f}", per_10k)
    if expired or f.beat_errors or bad:
        results.notes.append(
            f"heartbeat fleet: {expired:,} of {n:,} TTL instances expired "
            f"({f.beat_errors} heartbeats answered 404, {bad:.0f} non-2xx in the window)"
        )
    if late:
        results.notes.append(
            f"heartbeat fleet: {f.registered:,} of {n:,} registered, the last after "
            f"{f.registered_after_s:.1f} s (budget {reg_budget} s): the leader could not "
            "keep up with the heartbeats of those registered, or the window saw registrations"
        )


# --------------------------------------------------------------------------- driver


def print_table(results: Results) -> None:
    harness.print_table(
        results,
        groups=(),  # keep the order the metrics were measured in
        footnote="(etcd has no registry: its rows are a put / prefix range / watch of the"
        " same JSON)",
    )


STEPS = ("discover", "register", "fanout", "detect", "heartbeat")


def _run_all(
    plan: Plan, root: Path, results: Results, steps: set[str], sizes: set[int]
) -> list[tuple[str, float]]:
    settings = plan.settings
    worst: list[tuple[str, float]] = []
    systems: list[Callable[[], System]] = [
        lambda: Shoal(root, settings),
        lambda: Etcd(root, settings),
    ]
    if 1 in sizes:
        for make in systems:
            system = make()
            if isinstance(system, Etcd) and not steps & {"discover", "register", "fanout"}:
                continue
            with running(system, 1) as system:
                if "discover" in steps:
                    bench_discovery(system, 1, results)
                if "register" in steps:
                    bench_registration(system, 1, results)
                if "fanout" in steps:
                    bench_fanout(system, results)
                if isinstance(system, Shoal):
                    if "detect" in steps:
                        worst = bench_detection(system, plan, results)
                    if "heartbeat" in steps:
                        bench_heartbeats(system, plan, results)
    if 3 in sizes and steps & {"discover", "register"}:
        for make in systems:
            with running(make(), 3) as system:
                if "discover" in steps:
                    bench_discovery(system, 3, results)
                if "register" in steps:
                    bench_registration(system, 3, results)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 90 s)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs with taskset")
    parser.add_argument(
        "--logs",
        type=Path,
        default=Path(tempfile.gettempdir()) / "shoal-bench-registry-logs",
        help="where the servers' logs are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        default=",".join(STEPS),
        help="comma-separated steps to run, of: %(default)s",
    )
    parser.add_argument(
        "--members", default="1,3", help="cluster sizes to run (1, 3 or both: %(default)s)"
    )
    args = parser.parse_args(argv)
    steps = {step.strip() for step in args.only.split(",") if step.strip()}
    sizes = {int(size) for size in args.members.split(",") if size.strip()}
    if not steps <= set(STEPS) or not sizes <= {1, 3}:
        parser.error(f"--only takes {', '.join(STEPS)}; --members takes 1 and/or 3")
    signal.signal(signal.SIGTERM, terminate)  # unwind: finally blocks kill every PID
    ensure_tools()
    raise_nofile()
    server_cpus, loadgen_cpus = pick_cpus(not args.no_pin)
    if loadgen_cpus is not None:
        os.sched_setaffinity(0, {int(loadgen_cpus)})
    plan = Plan(
        settings=Settings(
            duration_s=2 if args.quick else 4,
            failover_trials=0,
            watchers=200 if args.quick else 1000,
            server_cpus=server_cpus,
            loadgen_cpus=loadgen_cpus,
        ),
        trials=3 if args.quick else 10,
        heartbeat_instances=2_000 if args.quick else 10_000,
        heartbeat_s=3 if args.quick else 10,
    )
    log(
        f"shoal registry/config vs etcd; wrk -t1, {plan.settings.duration_s} s per run; "
        f"servers on CPUs {server_cpus or 'any'}, load generators on {loadgen_cpus or 'any'}"
    )
    started = time.monotonic()
    results = Results()
    worst: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-bench-rc-") as tmp:
        try:
            worst = _run_all(plan, Path(tmp), results, steps, sizes)
        finally:
            collect_logs(Path(tmp), args.logs, results)
    print_table(results)
    print()
    print(
        "anchors: Eureka takes minutes and Nacos 15-30 s (default settings) to drop a "
        "silently dead instance; Nacos 2.x ~26.8k registrations/s on 3 x 8-core nodes"
    )
    for label, max_ms in worst:
        verdict = "PASS" if max_ms < GOAL_DETECTION_S * 1000 else "MISS"
        print(
            f"goal: detection < {GOAL_DETECTION_S * 1000:.0f} ms, {label}: "
            f"max {max_ms:.0f} ms {verdict}"
        )
    for note in results.notes:
        print("note: " + note)
    print(f"server logs: {args.logs}")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
