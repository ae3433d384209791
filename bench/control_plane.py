"""shoal's control plane against etcd, under the same load, in one invocation.

Both systems run as real processes on loopback ports picked by the kernel, fsync on (both
defaults), with their default election timeouts (shoal 10 x 50 ms, etcd 1000 ms). The load
generator for throughput is `wrk` with the Lua scripts in bench/lua/ (a Python load
generator under-reports etcd by 2-2.5x on this machine); everything else is a small asyncio
client in this process.

* writes: wrk at 1, 16 and 64 connections, single member and 3 members (load on the
  leader), every request a new key; afterwards the keys under the run's prefix are counted
  and must be at least the number of 2xx answers wrk saw, or the benchmark fails;
* reads: linearizable and stale, 64 connections, 3 members, on the leader and a follower;
* failover: SIGKILL the leader, time to the next write acknowledged by any survivor
  (each survivor polled every 10 ms with a 0.2 s client timeout); the killed member is
  restarted and caught up between trials;
* watch fan-out: N watchers on one prefix (single member), 20 writes 100 ms apart; the
  delay from just before each write is sent to its arrival at each watcher.

On a 2-core machine the servers are pinned to CPU 0 and the load generators (wrk and this
process) to CPU 1, so the two do not fight for the same core; the same for both systems.
The machine is shared and noisy: read the ratios, not the absolute numbers.

    .venv/bin/python -m bench.control_plane            # the full run (~4-5 min)
    .venv/bin/python -m bench.control_plane --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from shoal.testing.processes import LocalCluster, ServerProcess, free_port, wait_for

LUA_DIR = Path(__file__).resolve().parent / "lua"
VALUE = "v" * 64
READ_KEYS = 256
WRITE_CONNECTIONS = (1, 16, 64)
FANOUT_WRITES = 20
FANOUT_SPACING_S = 0.1

GOAL_WRITE_RATIO = 1.0
GOAL_FAILOVER_S = 1.0
GOAL_FANOUT_P99_MS = 100.0


@dataclass(frozen=True, slots=True)
class Settings:
    duration_s: int
    failover_trials: int
    watchers: int
    server_cpus: str | None
    loadgen_cpus: str | None


# --------------------------------------------------------------------------- processes


def _taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


class Member(Protocol):
    name: str

    @property
    def url(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> Any: ...

    def kill(self) -> None: ...

    def wait_healthy(self, timeout: float = 15.0) -> None: ...


@dataclass
class ShoalMember(ServerProcess):
    """A `shoal server` started under taskset (the PID stays the server's: taskset execs)."""

    cpus: str | None = None

    def command(self) -> list[str]:
        return _taskset(self.cpus) + super().command()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


@dataclass
class EtcdMember:
    """One etcd member on loopback, fsync on (the default), tracked by PID."""

    name: str
    data_dir: Path
    initial_cluster: str = ""
    token: str = "shoal-bench"
    cpus: str | None = None
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> EtcdMember:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            *_taskset(self.cpus), "etcd",
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def wait_healthy(self, timeout: float = 15.0) -> None:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited {self.proc.returncode}")
            r = httpx.get(self.url + "/health", timeout=1)
            return r.status_code == 200 and r.json().get("health") == "true"

        wait_for(healthy, timeout, what=f"etcd {self.name} /health")

    def status(self) -> dict[str, Any]:
        r = httpx.post(self.url + "/v3/maintenance/status", json={}, timeout=1)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _prefix_end(prefix: str) -> str:
    """etcd's range_end for a prefix: the prefix with its last byte incremented."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class System:
    """What the benchmark needs from a system under test; one subclass per system."""

    name = ""
    put_script = ""
    read_script = ""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.members: list[Member] = []

    def start(self, size: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for member in self.members:
            with contextlib.suppress(Exception):
                member.kill()

    def leader(self, timeout: float = 20.0) -> Member:
        raise NotImplementedError

    def put_request(self, key: str, value: str) -> tuple[str, str, dict[str, Any]]:
        """(method, path, json body) of a single-key put."""
        raise NotImplementedError

    def stale_get(self, member: Member, key: str) -> str | None:
        raise NotImplementedError

    def count_prefix(self, member: Member, prefix: str) -> int:
        raise NotImplementedError

    def watch_request(self, member: Member, prefix: str) -> bytes:
        raise NotImplementedError

    watch_ready = b""

    def watch_marker(self, key: str) -> bytes:
        raise NotImplementedError

    def put(self, member: Member, key: str, value: str, timeout: float = 5.0) -> None:
        method, path, body = self.put_request(key, value)
        r = httpx.request(method, member.url + path, json=body, timeout=timeout)
        r.raise_for_status()

    def others(self, member: Member) -> list[Member]:
        return [m for m in self.members if m is not member]

    def wait_converged(self, timeout: float = 30.0) -> Member:
        """A leader every live member agrees on, and every member has its latest write."""
        leader = self.leader(timeout)
        key = f"sync/{uuid.uuid4().hex[:12]}"
        wait_for(lambda: self._try_put(leader, key), timeout, what=f"{self.name} sync write")
        for member in self.members:
            wait_for(
                lambda m=member: self.stale_get(m, key) == "x",  # type: ignore[misc]
                timeout,
                what=f"{self.name} {member.name} caught up",
            )
        return leader

    def _try_put(self, member: Member, key: str) -> bool:
        self.put(member, key, "x", timeout=2)
        return True


class Shoal(System):
    name = "shoal"
    put_script = "shoal_put.lua"
    read_script = "shoal_get.lua"
    watch_ready = b": watching"

    def start(self, size: int) -> None:
        root = self.root / f"shoal-{size}-{uuid.uuid4().hex[:6]}"
        template = LocalCluster(root, size)
        members = [
            ShoalMember(
                name=p.name,
                data_dir=p.data_dir,
                client_port=p.client_port,
                peer_port=p.peer_port,
                initial_cluster=p.initial_cluster,
                cpus=self.settings.server_cpus,
            )
            for p in template.members.values()
        ]
        self.members = list(members)
        for m in members:
            m.start()
        for m in members:
            m.wait_healthy()
        self.wait_converged()

    def leader(self, timeout: float = 20.0) -> Member:
        def agreed() -> Member | None:
            live = [m for m in self.members if m.alive]
            views = {httpx.get(m.url + "/api/v1/cluster", timeout=1).json()["leader"] for m in live}
            if len(views) != 1:
                return None
            name = views.pop()
            for m in live:
                if m.name == name:
                    status = httpx.get(m.url + "/api/v1/cluster", timeout=1).json()
                    return m if status["role"] == "leader" else None
            return None

        return wait_for(agreed, timeout, what="an agreed shoal leader")

    def put_request(self, key: str, value: str) -> tuple[str, str, dict[str, Any]]:
        return "PUT", f"/api/v1/kv/{key}", {"value": value}

    def stale_get(self, member: Member, key: str) -> str | None:
        r = httpx.get(f"{member.url}/api/v1/kv/{key}?consistency=stale", timeout=1)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        value: str = r.json()["value"]
        return value

    def count_prefix(self, member: Member, prefix: str) -> int:
        r = httpx.get(f"{member.url}/api/v1/kv", params={"prefix": prefix, "limit": 1}, timeout=30)
        r.raise_for_status()
        count: int = r.json()["count"]
        return count

    def watch_request(self, member: Member, prefix: str) -> bytes:
        host = member.url.removeprefix("http://")
        return (
            f"GET /api/v1/watch?prefix={prefix} HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

    def watch_marker(self, key: str) -> bytes:
        return f'"key":"{key}"'.encode()


class Etcd(System):
    name = "etcd"
    put_script = "etcd_put.lua"
    read_script = "etcd_range.lua"
    watch_ready = b'"created":true'

    def start(self, size: int) -> None:
        root = self.root / f"etcd-{size}-{uuid.uuid4().hex[:6]}"
        members = [
            EtcdMember(f"e{i}", root / f"e{i}" / "data", cpus=self.settings.server_cpus)
            for i in range(1, size + 1)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
        token = f"bench-{uuid.uuid4().hex[:8]}"
        for m in members:
            m.initial_cluster, m.token = initial, token
        self.members = list(members)
        for m in members:
            m.start()
        for m in members:
            m.wait_healthy(30)
        self.wait_converged()

    def leader(self, timeout: float = 20.0) -> Member:
        def agreed() -> Member | None:
            live = [m for m in self.members if m.alive and isinstance(m, EtcdMember)]
            statuses = [(m, m.status()) for m in live]
            leaders = {s["leader"] for _, s in statuses}
            if len(leaders) != 1:
                return None
            lead = leaders.pop()
            for m, s in statuses:
                if s["header"]["member_id"] == lead:
                    return m
            return None

        return wait_for(agreed, timeout, what="an agreed etcd leader")

    def put_request(self, key: str, value: str) -> tuple[str, str, dict[str, Any]]:
        return "POST", "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}

    def stale_get(self, member: Member, key: str) -> str | None:
        r = httpx.post(
            member.url + "/v3/kv/range", json={"key": _b64(key), "serializable": True}, timeout=1
        )
        r.raise_for_status()
        kvs = r.json().get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def count_prefix(self, member: Member, prefix: str) -> int:
        r = httpx.post(
            member.url + "/v3/kv/range",
            json={"key": _b64(prefix), "range_end": _prefix_end(prefix), "count_only": True},
            timeout=30,
        )
        r.raise_for_status()
        return int(r.json().get("count", 0))

    def watch_request(self, member: Member, prefix: str) -> bytes:
        host = member.url.removeprefix("http://")
        body = json.dumps(
            {"create_request": {"key": _b64(prefix), "range_end": _prefix_end(prefix)}}
        ).encode()
        return (
            f"POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def watch_marker(self, key: str) -> bytes:
        return f'"key":"{_b64(key)}"'.encode()


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.status_errors

    @property
    def flag(self) -> str:
        parts = []
        if self.status_errors:
            parts.append(f"{self.status_errors} non-2xx")
        if self.socket_errors:
            parts.append(f"{self.socket_errors} socket errors")
        return " [!" + ", ".join(parts) + "]" if parts else ""


def run_wrk(
    settings: Settings, url: str, script: str, args: list[str], connections: int
) -> WrkResult:
    cmd = [
        *_taskset(settings.loadgen_cpus), "wrk",
        "-t1", f"-c{connections}", f"-d{settings.duration_s}s", "--latency", "--timeout", "5s",
        "-s", str(LUA_DIR / script), url, "--", *args,
    ]  # fmt: skip
    env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR))
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=settings.duration_s + 60
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"no WRKJSON line in wrk output:\n{out.stdout}\n{out.stderr}")
    d = json.loads(line.removeprefix("WRKJSON "))
    # Cross-check the summary line wrk prints itself.
    non2xx = next((int(ln.split(":")[1]) for ln in out.stdout.splitlines() if "Non-2xx" in ln), 0)
    if non2xx != d["status_errors"]:
        raise RuntimeError(f"wrk disagrees with itself on non-2xx: {non2xx} vs {d}")
    return WrkResult(
        requests=d["requests"],
        duration_s=d["duration_us"] / 1e6,
        status_errors=d["status_errors"],
        socket_errors=d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"],
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
    )


# --------------------------------------------------------------------------- results


@dataclass
class Results:
    """metric -> system -> (shown value, number used for the ratio)."""

    rows: dict[str, dict[str, tuple[str, float | None]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failover_trials: dict[str, list[float]] = field(default_factory=dict)

    def add(self, metric: str, system: str, shown: str, value: float | None) -> None:
        if metric not in self.rows:
            self.rows[metric] = {}
            self.order.append(metric)
        self.rows[metric][system] = (shown, value)

    def value(self, metric: str, system: str) -> float | None:
        return self.rows.get(metric, {}).get(system, ("", None))[1]


def log(message: str) -> None:
    print(message, flush=True)


def bench_writes(system: System, size: int, results: Results) -> None:
    leader = system.leader()
    where = "leader" if size > 1 else "the member"
    for conns in WRITE_CONNECTIONS:
        prefix = f"bench/{size}m-{conns}c-{uuid.uuid4().hex[:6]}/"
        r = run_wrk(system.settings, leader.url, system.put_script, [prefix], conns)
        stored = system.count_prefix(leader, prefix)
        log(
            f"  {system.name} {size}m writes c={conns} -> {where} {leader.name}: "
            f"{r.rps:,.0f}/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms, "
            f"{r.ok} 2xx, {stored} keys stored{r.flag}"
        )
        if stored < r.ok:
            raise AssertionError(
                f"{system.name}: {r.ok} writes acknowledged but only {stored} keys under {prefix}"
            )
        label = f"write {size}m c={conns}"
        results.add(f"{label} req/s", system.name, f"{r.rps:,.0f}{r.flag}", r.rps)
        results.add(f"{label} p50 ms", system.name, f"{r.p50_ms:.2f}", r.p50_ms)
        results.add(f"{label} p99 ms", system.name, f"{r.p99_ms:.2f}", r.p99_ms)


def bench_reads(system: System, results: Results) -> None:
    leader = system.leader()
    follower = system.others(leader)[0]
    prefix = f"read/{uuid.uuid4().hex[:6]}/"
    with httpx.Client(timeout=5) as client:
        for i in range(READ_KEYS):
            method, path, body = system.put_request(f"{prefix}{i}", VALUE)
            client.request(method, leader.url + path, json=body).raise_for_status()
    system.wait_converged()
    for consistency in ("linearizable", "stale"):
        for role, member in (("leader", leader), ("follower", follower)):
            args = [prefix, str(READ_KEYS), consistency]
            r = run_wrk(system.settings, member.url, system.read_script, args, 64)
            log(
                f"  {system.name} 3m {consistency} reads c=64 -> {role} {member.name}: "
                f"{r.rps:,.0f}/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms{r.flag}"
            )
            label = f"read {consistency} 3m c=64 {role}"
            results.add(f"{label} req/s", system.name, f"{r.rps:,.0f}{r.flag}", r.rps)
            results.add(f"{label} p99 ms", system.name, f"{r.p99_ms:.2f}", r.p99_ms)


async def _first_write(system: System, survivors: list[Member], deadline_s: float) -> float:
    """Seconds until any survivor acknowledges a write (each polled every 10 ms)."""
    start = time.perf_counter()

    async def attempt(client: httpx.AsyncClient, member: Member) -> float:
        n = 0
        while True:
            n += 1
            method, path, body = system.put_request(f"failover/{member.name}/{n}", "x")
            with contextlib.suppress(httpx.HTTPError):
                r = await client.request(method, member.url + path, json=body)
                if r.status_code == 200:
                    return time.perf_counter() - start
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(timeout=0.2) as client:
        tasks = [asyncio.create_task(attempt(client, m)) for m in survivors]
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                raise TimeoutError(f"{system.name}: no write within {deadline_s}s of the kill")
            return next(iter(done)).result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def bench_failover(system: System, results: Results) -> None:
    trials: list[float] = []
    for trial in range(system.settings.failover_trials):
        leader = system.wait_converged()
        survivors = system.others(leader)
        leader.kill()
        took = asyncio.run(_first_write(system, survivors, 30.0))
        trials.append(took)
        new_leader = system.leader()
        log(
            f"  {system.name} failover trial {trial + 1}: killed {leader.name}, "
            f"first write after {took * 1000:.0f} ms (new leader {new_leader.name})"
        )
        leader.start()
        leader.wait_healthy(30)
    system.wait_converged()
    med = statistics.median(trials)
    results.failover_trials[system.name] = trials
    each = ", ".join(f"{t * 1000:.0f}" for t in trials)
    results.add("failover median ms", system.name, f"{med * 1000:.0f}", med * 1000)
    results.add("failover trials ms", system.name, each, None)


class WatchConnection(asyncio.Protocol):
    """One raw HTTP/1.1 watch stream; notes when each expected key first shows up."""

    def __init__(self, request: bytes, ready: bytes, markers: list[bytes]) -> None:
        self.request = request
        self.ready_marker = ready
        self.markers = markers
        self.buf = bytearray()
        self.scan = 0
        self.next = 0
        self.times: list[float] = []
        self.ready = False
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if not self.ready:
            if self.ready_marker not in self.buf:
                return
            self.ready = True
            self.scan = len(self.buf)
            return
        while self.next < len(self.markers):
            pos = self.buf.find(self.markers[self.next], self.scan)
            if pos < 0:
                break
            self.times.append(now)
            self.scan = pos + len(self.markers[self.next])
            self.next += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


async def _fanout(system: System, member: Member, watchers: int) -> tuple[list[float], int]:
    """(delays in ms over all (write, watcher) pairs, deliveries missing)."""
    run = uuid.uuid4().hex[:6]
    prefix = f"fan/{run}/"
    keys = [f"{prefix}{i:04d}" for i in range(FANOUT_WRITES)]
    markers = [system.watch_marker(k) for k in keys]
    request = system.watch_request(member, prefix)
    port = int(member.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    conns: list[WatchConnection] = []

    async def connect() -> None:
        conn = WatchConnection(request, system.watch_ready, markers)
        await loop.create_connection(lambda: conn, "127.0.0.1", port)
        conns.append(conn)

    try:
        for i in range(0, watchers, 50):
            await asyncio.gather(*(connect() for _ in range(min(50, watchers - i))))
        deadline = time.monotonic() + 60
        while not all(c.ready for c in conns):
            if time.monotonic() > deadline:
                waiting = sum(not c.ready for c in conns)
                raise TimeoutError(f"{system.name}: {waiting} watchers never started")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        sent: list[float] = []
        async with httpx.AsyncClient(timeout=5) as client:
            for key in keys:
                method, path, body = system.put_request(key, VALUE)
                t0 = time.perf_counter()
                sent.append(t0)
                r = await client.request(method, member.url + path, json=body)
                r.raise_for_status()
                await asyncio.sleep(max(0.0, t0 + FANOUT_SPACING_S - time.perf_counter()))
        deadline = time.monotonic() + 10
        while any(c.next < len(keys) and not c.closed for c in conns):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        delays = [(t - sent[i]) * 1000 for c in conns for i, t in enumerate(c.times[: len(keys)])]
        missing = watchers * len(keys) - len(delays)
        return delays, missing
    finally:
        for c in conns:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0.1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report_fanout(
    system: System, results: Results, label: str, what: str, delays: list[float], missing: int
) -> None:
    """Log a fan-out run and add its p50/p99 rows (``label`` names them, ``what`` the run)."""
    if not delays:
        raise AssertionError(f"{system.name}: no notification arrived")
    p50, p99 = _percentile(delays, 0.5), _percentile(delays, 0.99)
    flag = f" [!{missing} missing]" if missing else ""
    log(f"  {system.name} {what}: p50 {p50:.1f} ms p99 {p99:.1f} ms max {max(delays):.1f} ms{flag}")
    results.add(f"{label} p50 ms", system.name, f"{p50:.1f}{flag}", p50)
    results.add(f"{label} p99 ms", system.name, f"{p99:.1f}{flag}", p99)


def bench_fanout(system: System, results: Results) -> None:
    n = system.settings.watchers
    delays, missing = asyncio.run(_fanout(system, system.leader(), n))
    what = f"fan-out 1m, {n} watchers x {FANOUT_WRITES} writes"
    report_fanout(system, results, f"fan-out {n} watchers", what, delays, missing)


# --------------------------------------------------------------------------- driver


def ensure_tools() -> None:
    missing = [tool for tool in ("etcd", "wrk") if shutil.which(tool) is None]
    if not missing:
        return
    log(f"missing {', '.join(missing)}: apt-get install -y etcd-server wrk")
    subprocess.run("apt-get update -qq", shell=True, check=True, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "etcd-server", "wrk"],
        check=True,
        timeout=600,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )
    still = [tool for tool in ("etcd", "wrk") if shutil.which(tool) is None]
    if still:
        raise SystemExit(f"still missing after apt-get: {', '.join(still)}")


def pick_cpus(pin: bool) -> tuple[str | None, str | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    server = ",".join(str(c) for c in cpus[:-1])
    return server, str(cpus[-1])


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextlib.contextmanager
def running(system: System, size: int) -> Iterator[System]:
    log(f"{system.name}: starting {size} member(s)")
    try:
        system.start(size)
        yield system
    finally:
        system.stop()


def collect_logs(root: Path, keep: Path, results: Results) -> None:
    """Copy every server log to `keep` and note tracebacks and errors in them."""
    keep.mkdir(parents=True, exist_ok=True)
    for path in sorted(root.rglob("*.log")):
        rel = path.relative_to(root)
        system = rel.parts[0].split("-")[0]
        dest = keep / "-".join(rel.parts)
        shutil.copyfile(path, dest)
        lines = path.read_text(errors="replace").splitlines()
        if system == "shoal":
            bad = [ln for ln in lines if "Traceback" in ln or "ERROR" in ln or "Exception" in ln]
        else:
            bad = [ln for ln in lines if '"level":"error"' in ln or '"level":"fatal"' in ln]
        if bad:
            results.notes.append(
                f"{system} log {dest}: {len(bad)} error lines, first: {bad[0][:160]}"
            )


def _ratio(metric: str, results: Results) -> str:
    shoal, etcd = results.value(metric, "shoal"), results.value(metric, "etcd")
    if shoal is None or etcd is None or etcd == 0:
        return ""
    return f"{shoal / etcd:.2f}x"


def print_table(
    results: Results,
    groups: tuple[str, ...] = ("write 1m", "write 3m", "read", "failover", "fan-out"),
    footnote: str = "",
) -> None:
    """The side-by-side table, metrics ordered by `groups` (name prefixes)."""
    head = ("metric", "shoal", "etcd", "shoal/etcd")
    rows = [head]
    ordered = sorted(
        results.order,
        key=lambda m: next((i for i, g in enumerate(groups) if m.startswith(g)), len(groups)),
    )
    for metric in ordered:
        cells = results.rows[metric]
        rows.append(
            (
                metric,
                cells.get("shoal", ("-", None))[0],
                cells.get("etcd", ("-", None))[0],
                _ratio(metric, results),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    for i, row in enumerate(rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print("(ratio = shoal/etcd: above 1 is better for req/s, below 1 is better for ms)")
    if footnote:
        print(footnote)


def goals(results: Results, watchers: int) -> list[str]:
    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "MISS")

    w_s = results.value("write 3m c=64 req/s", "shoal")
    w_e = results.value("write 3m c=64 req/s", "etcd")
    ratio = w_s / w_e if w_s is not None and w_e else None
    fo = results.value("failover median ms", "shoal")
    fan = results.value(f"fan-out {watchers} watchers p99 ms", "shoal")
    lines = [
        f"3-member writes at 64 clients >= {GOAL_WRITE_RATIO:.1f}x etcd: "
        + (f"{ratio:.2f}x " if ratio is not None else "")
        + verdict(None if ratio is None else ratio >= GOAL_WRITE_RATIO),
        f"failover median < {GOAL_FAILOVER_S * 1000:.0f} ms: "
        + (f"{fo:.0f} ms " if fo is not None else "")
        + verdict(None if fo is None else fo < GOAL_FAILOVER_S * 1000),
        f"fan-out p99 < {GOAL_FANOUT_P99_MS:.0f} ms at {watchers} watchers: "
        + (f"{fan:.1f} ms " if fan is not None else "")
        + verdict(None if fan is None else fan < GOAL_FANOUT_P99_MS),
    ]
    if watchers != 1000:
        lines[-1] += " (goal is stated at 1000 watchers)"
    return lines


def run(settings: Settings, keep_logs: Path) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        root = Path(tmp)
        try:
            _run_all(settings, root, results)
        finally:
            collect_logs(root, keep_logs, results)
    return results


def _run_all(settings: Settings, root: Path, results: Results) -> None:
    systems: list[Callable[[], System]] = [
        lambda: Shoal(root, settings),
        lambda: Etcd(root, settings),
    ]
    for make in systems:
        with running(make(), 1) as system:
            bench_writes(system, 1, results)
            bench_fanout(system, results)
    for make in systems:
        with running(make(), 3) as system:
            bench_writes(system, 3, results)
            bench_reads(system, results)
            bench_failover(system, results)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs with taskset")
    parser.add_argument(
        "--logs",
        type=Path,
        default=Path(tempfile.gettempdir()) / "shoal-bench-logs",
        help="where the servers' logs are kept (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks kill every server by PID.
    signal.signal(signal.SIGTERM, _terminate)
    ensure_tools()
    _raise_nofile()
    server_cpus, loadgen_cpus = pick_cpus(not args.no_pin)
    if loadgen_cpus is not None:
        os.sched_setaffinity(0, {int(loadgen_cpus)})
    settings = Settings(
        duration_s=2 if args.quick else 5,
        failover_trials=2 if args.quick else 5,
        watchers=200 if args.quick else 1000,
        server_cpus=server_cpus,
        loadgen_cpus=loadgen_cpus,
    )
    etcd_version = subprocess.run(
        ["etcd", "--version"], capture_output=True, text=True, timeout=10
    ).stdout.splitlines()[0]
    log(
        f"shoal vs {etcd_version}; wrk -t1, {settings.duration_s} s per run; "
        f"servers on CPUs {server_cpus or 'any'}, load generators on {loadgen_cpus or 'any'}"
    )
    started = time.monotonic()
    results = run(settings, args.logs)
    print_table(results)
    print()
    for line in goals(results, settings.watchers):
        print("goal: " + line)
    for note in results.notes:
        print("note: " + note)
    print(f"server logs: {args.logs}")
    print(f"\n(fan-out on a single member; total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
