"""What every control-plane benchmark shares: the systems under test, `wrk`, the table.

* processes: `ShoalMember` (a `shoal server` under taskset) and `EtcdMember`, both real
  processes on loopback ports from the kernel, tracked by PID; `System` with its `Shoal`
  and `Etcd` subclasses is what a benchmark asks of a system (start N members, find the
  agreed leader, put, stale get, count a prefix, open a raw watch);
* `run_wrk`: one wrk run with a Lua script from bench/lua/, read from the script's
  WRKJSON line and cross-checked against wrk's own summary;
* `WatchConnection`: one raw HTTP/1.1 watch stream (asyncio or uvloop), timing when each
  expected key arrives; `warm_up` readies a writer's client first; `report_fanout` turns
  the delays into p50/p99 rows;
* `Results` and `print_table`: metric -> system -> value, printed side by side with the
  shoal/etcd ratio;
* the environment: `ensure_tools` (etcd, wrk), `pick_cpus` (servers and load generators
  on different cores), `raise_nofile`, `running` (start, yield, always stop),
  `collect_logs`, `terminate` (SIGTERM unwinds like Ctrl-C so every PID is killed).

Each benchmark (bench/control_plane.py, bench/registry_config.py) keeps only its steps,
goals and command line; nothing here measures on its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import httpx

from shoal.testing.processes import LocalCluster, ServerProcess, free_port, wait_for

LUA_DIR = Path(__file__).resolve().parent / "lua"


@dataclass(frozen=True, slots=True)
class Settings:
    """How long each wrk run lasts, the step sizes, and where servers and load run."""

    duration_s: int
    failover_trials: int
    watchers: int
    server_cpus: str | None
    loadgen_cpus: str | None


# --------------------------------------------------------------------------- processes


def taskset(cpus: str | None) -> list[str]:
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
        return taskset(self.cpus) + super().command()

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
            *taskset(self.cpus), "etcd",
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


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def prefix_end(prefix: str) -> str:
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
        return "POST", "/v3/kv/put", {"key": b64(key), "value": b64(value)}

    def stale_get(self, member: Member, key: str) -> str | None:
        r = httpx.post(
            member.url + "/v3/kv/range", json={"key": b64(key), "serializable": True}, timeout=1
        )
        r.raise_for_status()
        kvs = r.json().get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def count_prefix(self, member: Member, prefix: str) -> int:
        r = httpx.post(
            member.url + "/v3/kv/range",
            json={"key": b64(prefix), "range_end": prefix_end(prefix), "count_only": True},
            timeout=30,
        )
        r.raise_for_status()
        return int(r.json().get("count", 0))

    def watch_request(self, member: Member, prefix: str) -> bytes:
        host = member.url.removeprefix("http://")
        body = json.dumps(
            {"create_request": {"key": b64(prefix), "range_end": prefix_end(prefix)}}
        ).encode()
        return (
            f"POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def watch_marker(self, key: str) -> bytes:
        return f'"key":"{b64(key)}"'.encode()


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
        *taskset(settings.loadgen_cpus), "wrk",
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


# --------------------------------------------------------------------------- watches


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
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance here.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

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


async def warm_up(system: System, client: httpx.AsyncClient, member: Member) -> None:
    """One write outside any watched prefix before the timed ones: a client's first
    request pays its own lazy setup (30-90 ms with thousands of sockets open in this
    process), which would be timed as the first write's fan-out delay."""
    method, path, body = system.put_request(f"fanwarm/{uuid.uuid4().hex[:6]}", "warm")
    (await client.request(method, member.url + path, json=body)).raise_for_status()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report_fanout(
    system: System, results: Results, label: str, what: str, delays: list[float], missing: int
) -> None:
    """Log a fan-out run and add its p50/p99 rows (``label`` names them, ``what`` the run)."""
    if not delays:
        raise AssertionError(f"{system.name}: no notification arrived")
    p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    flag = f" [!{missing} missing]" if missing else ""
    log(f"  {system.name} {what}: p50 {p50:.1f} ms p99 {p99:.1f} ms max {max(delays):.1f} ms{flag}")
    results.add(f"{label} p50 ms", system.name, f"{p50:.1f}{flag}", p50)
    results.add(f"{label} p99 ms", system.name, f"{p99:.1f}{flag}", p99)


# --------------------------------------------------------------------------- environment


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


def raise_nofile() -> None:
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


# --------------------------------------------------------------------------- table


def ratio(metric: str, results: Results) -> str:
    shoal, etcd = results.value(metric, "shoal"), results.value(metric, "etcd")
    if shoal is None or etcd is None or etcd == 0:
        return ""
    return f"{shoal / etcd:.2f}x"


def print_table(
    results: Results,
    groups: tuple[str, ...] = (),
    footnote: str = "",
) -> None:
    """The side-by-side table, metrics ordered by `groups` (name prefixes; none keeps the
    order they were measured in)."""
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
                ratio(metric, results),
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


def terminate(signum: int, frame: object) -> None:
    """A SIGTERM handler: unwind like Ctrl-C, so the finally blocks kill every server."""
    raise KeyboardInterrupt
