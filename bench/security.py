"""The cost of TLS and ACLs: a 3-member shoal cluster plain, with TLS, and with TLS and
ACLs, under the same load, in one invocation.

The three clusters run side by side as real processes on loopback (so each variant pays
the same idle neighbours), with certificates from `shoal certs init`'s CA and, for ACLs,
a token made by `shoal acl bootstrap`'s endpoint. The load generator is the control-plane
bench's: `wrk` (one thread) with a Lua script (bench/lua/shoal_secure.lua: the same
requests as shoal_put.lua and shoal_get.lua, plus the bearer token); wrk speaks TLS
itself and keeps its connections, so the cost measured is the steady-state one
(encryption and, with ACLs, the guard's token lookup and permission check), not the
handshakes.

Per trial and per variant, in turn (plain, TLS, TLS+ACL, then again: alternating, so
the shared machine's drift falls on all three alike):

* writes: 64 connections on the leader, every request a new key; the keys under the
  run's prefix are counted afterwards and must be at least wrk's 2xx count;
* reads: linearizable, 64 connections, on the leader and on a follower (a follower's
  linearizable read asks the leader for its commit index over the peer port, mutual TLS
  in the TLS variants).

The table shows the median over the trials of req/s, p50 and p99 per variant and the
ratio of each to plain; the goal (issue 15) is a cost of at most 15 % at 64 clients for
writes and reads under TLS. On a 2-core machine the servers are pinned to CPU 0 and wrk
and this process to CPU 1. The machine is shared: the load average is printed before
and after; read the ratios, not the absolute numbers.

    .venv/bin/python -m bench.security            # 3 trials x 5 s per run (~3-4 min)
    .venv/bin/python -m bench.security --quick    # 1 trial x 2 s (a smoke run)
    .venv/bin/python -m bench.security --profile /tmp/tls-prof   # + py-spy (bench/tls_profile.py)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Member,
    Results,
    Settings,
    Shoal,
    ShoalMember,
    collect_logs,
    ensure_tools,
    log,
    pick_cpus,
    raise_nofile,
    run_wrk,
    terminate,
)
from bench.tls_profile import recording, tls_share
from shoal.security.certs import init_certs
from shoal.testing.processes import LocalCluster, wait_for

SCRIPT = "shoal_secure.lua"
CONNECTIONS = 64
READ_KEYS = 256
VALUE = "v" * 64
VARIANTS = ("plain", "tls", "tls+acl")
GOAL_COST = 0.15  # at most 15 % fewer req/s than plain, at 64 clients (issue 15)
METRICS = ("write c=64", "linearizable read c=64 leader", "linearizable read c=64 follower")


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


@dataclass
class SecureMember(ShoalMember):
    """A pinned `shoal server` with TLS and/or `--acl`; its own calls trust the CA."""

    pki: Pki | None = None
    acl: bool = False
    token: str | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.pki is not None else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    def command(self) -> list[str]:
        cmd = super().command()
        if self.pki is not None:
            cmd += ["--tls-cert", str(self.pki.cert), "--tls-key", str(self.pki.key)]
            cmd += ["--tls-ca", str(self.pki.ca)]
        return cmd + (["--acl"] if self.acl else [])

    def client(self, timeout: float = 5.0) -> httpx.Client:
        verify: ssl.SSLContext | bool = True
        if self.pki is not None:
            verify = ssl.create_default_context(cafile=str(self.pki.ca))
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(verify=verify, headers=headers, timeout=timeout)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            with self.client(1) as c:
                return c.get(self.url + "/healthz").status_code == 200

        wait_for(healthy, timeout, what=f"{self.name} /healthz")


class SecureShoal(Shoal):
    """One variant's 3-member cluster; every call of the bench goes through its client."""

    def __init__(self, root: Path, settings: Settings, variant: str, pki: Pki) -> None:
        super().__init__(root, settings)
        self.name = variant
        self.pki = pki if variant.startswith("tls") else None
        self.acl = variant.endswith("acl")
        self.token: str | None = None

    def start(self, size: int) -> None:
        root = self.root / f"shoal-{self.name.replace('+', '-')}-{uuid.uuid4().hex[:6]}"
        template = LocalCluster(root, size)
        members = [
            SecureMember(
                name=p.name,
                data_dir=p.data_dir,
                client_port=p.client_port,
                peer_port=p.peer_port,
                initial_cluster=p.initial_cluster,
                cpus=self.settings.server_cpus,
                pki=self.pki,
                acl=self.acl,
            )
            for p in template.members.values()
        ]
        self.members = list(members)
        for m in members:
            m.start()
        for m in members:
            m.wait_healthy()
        if self.acl:
            self.token = wait_for(lambda: self._bootstrap(members[0]), 30, what="bootstrap")
            for m in members:
                m.token = self.token
        self.wait_converged()

    def _bootstrap(self, member: SecureMember) -> str | None:
        with member.client() as c:
            answer = c.post(member.url + "/api/v1/acl/bootstrap")
        token: str | None = answer.json()["token"] if answer.is_success else None
        return token

    def _client(self, member: Member, timeout: float = 5.0) -> httpx.Client:
        assert isinstance(member, SecureMember)
        return member.client(timeout)

    def leader(self, timeout: float = 20.0) -> Member:
        def status(m: Member) -> dict[str, Any]:
            with self._client(m, 1) as c:
                body: dict[str, Any] = c.get(m.url + "/api/v1/cluster").json()
                return body

        def agreed() -> Member | None:
            live = [m for m in self.members if m.alive]
            views = {status(m)["leader"] for m in live}
            if len(views) != 1:
                return None
            name = views.pop()
            return next((m for m in live if m.name == name and status(m)["role"] == "leader"), None)

        return wait_for(agreed, timeout, what=f"an agreed {self.name} leader")

    def put(self, member: Member, key: str, value: str, timeout: float = 5.0) -> None:
        with self._client(member, timeout) as c:
            c.put(f"{member.url}/api/v1/kv/{key}", json={"value": value}).raise_for_status()

    def stale_get(self, member: Member, key: str) -> str | None:
        with self._client(member, 1) as c:
            r = c.get(f"{member.url}/api/v1/kv/{key}?consistency=stale")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        value: str = r.json()["value"]
        return value

    def count_prefix(self, member: Member, prefix: str) -> int:
        with self._client(member, 30) as c:
            r = c.get(f"{member.url}/api/v1/kv", params={"prefix": prefix, "limit": 1})
        r.raise_for_status()
        count: int = r.json()["count"]
        return count


@dataclass
class Samples:
    """metric -> variant -> one (req/s, p50 ms, p99 ms) per trial."""

    runs: dict[str, dict[str, list[tuple[float, float, float]]]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)

    def add(self, metric: str, variant: str, rps: float, p50: float, p99: float) -> None:
        self.runs.setdefault(metric, {}).setdefault(variant, []).append((rps, p50, p99))

    def median(self, metric: str, variant: str, i: int) -> float | None:
        runs = self.runs.get(metric, {}).get(variant)
        return statistics.median(r[i] for r in runs) if runs else None


# --------------------------------------------------------------------------- steps


def bench_writes(system: SecureShoal, samples: Samples) -> None:
    leader = system.leader()
    prefix = f"bench/{system.name.replace('+', '-')}-{uuid.uuid4().hex[:6]}/"
    r = run_wrk(system.settings, leader.url, SCRIPT, ["put", prefix, system.token or "-"], 64)
    stored = system.count_prefix(leader, prefix)
    log(
        f"  {system.name:8} writes c=64 -> leader {leader.name}: {r.rps:,.0f}/s "
        f"p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms, {r.ok} 2xx, {stored} stored{r.flag}"
    )
    if stored < r.ok:
        raise AssertionError(f"{system.name}: {r.ok} writes acknowledged, {stored} stored")
    if r.flag:
        samples.flags.append(f"{system.name} writes{r.flag}")
    samples.add("write c=64", system.name, r.rps, r.p50_ms, r.p99_ms)


def prepare_reads(system: SecureShoal) -> str:
    leader = system.leader()
    prefix = f"read/{uuid.uuid4().hex[:6]}/"
    for i in range(READ_KEYS):
        system.put(leader, f"{prefix}{i}", VALUE)
    system.wait_converged()
    return prefix


def bench_reads(system: SecureShoal, prefix: str, samples: Samples) -> None:
    leader = system.leader()
    follower = system.others(leader)[0]
    for role, member in (("leader", leader), ("follower", follower)):
        args = ["get", prefix, str(READ_KEYS), "linearizable", system.token or "-"]
        r = run_wrk(system.settings, member.url, SCRIPT, args, CONNECTIONS)
        log(
            f"  {system.name:8} linearizable reads c=64 -> {role} {member.name}: "
            f"{r.rps:,.0f}/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms{r.flag}"
        )
        if r.flag:
            samples.flags.append(f"{system.name} {role} reads{r.flag}")
        samples.add(f"linearizable read c=64 {role}", system.name, r.rps, r.p50_ms, r.p99_ms)


def profile(system: SecureShoal, prefix: str, out: Path) -> list[str]:
    """One more write run and read run on `system`'s leader with py-spy on every member;
    the TLS share of each member's samples (bench/tls_profile.py)."""
    leader = system.leader()
    pids = {
        ("leader" if m is leader else m.name): m.pid
        for m in system.members
        if isinstance(m, SecureMember) and m.pid is not None
    }
    runs = {
        "writes": ["put", f"profile/{uuid.uuid4().hex[:6]}/", system.token or "-"],
        "reads": ["get", prefix, str(READ_KEYS), "linearizable", system.token or "-"],
    }
    lines = []
    for run, args in runs.items():
        seconds = max(1, system.settings.duration_s - 1)
        with recording(pids, seconds, out, run) as paths:
            run_wrk(system.settings, leader.url, SCRIPT, args, CONNECTIONS)
        if not paths:
            return ["profile: py-spy is not installed (pip install py-spy)"]
        for path in paths:
            if path.exists():
                lines.append(f"profile {system.name} {path.stem}: {tls_share(path).line()}")
    return lines


# --------------------------------------------------------------------------- driver


@contextlib.contextmanager
def clusters(root: Path, settings: Settings) -> Iterator[list[SecureShoal]]:
    issued = init_certs(root / "certs")
    pki = Pki(issued.ca, issued.member_cert, issued.member_key)
    systems = [SecureShoal(root, settings, variant, pki) for variant in VARIANTS]
    try:
        for system in systems:
            log(f"{system.name}: starting 3 members")
            system.start(3)
        yield systems
    finally:
        for system in systems:
            system.stop()


def run(
    settings: Settings, trials: int, keep_logs: Path, profile_dir: Path | None = None
) -> Samples:
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-security-") as tmp:
        root = Path(tmp)
        results = Results()
        try:
            with clusters(root, settings) as systems:
                prefixes = {s.name: prepare_reads(s) for s in systems}
                for trial in range(1, trials + 1):
                    log(f"trial {trial}/{trials}")
                    for system in systems:
                        bench_writes(system, samples)
                    for system in systems:
                        bench_reads(system, prefixes[system.name], samples)
                if profile_dir is not None:
                    tls = next(s for s in systems if s.name == "tls")
                    samples.profile = profile(tls, prefixes["tls"], profile_dir)
        finally:
            collect_logs(root, keep_logs, results)
        samples.flags.extend(results.notes)
    return samples


def table(samples: Samples) -> list[str]:
    head = ["metric", *VARIANTS, *(f"{v}/plain" for v in VARIANTS[1:])]
    rows = [head]
    for metric in METRICS:
        for i, unit in enumerate(("req/s", "p50 ms", "p99 ms")):
            values = [samples.median(metric, v, i) for v in VARIANTS]
            shown = ["-" if x is None else (f"{x:,.0f}" if i == 0 else f"{x:.2f}") for x in values]
            base = values[0]
            ratios = ["" if x is None or not base else f"{x / base:.2f}x" for x in values[1:]]
            rows.append([f"{metric} {unit}", *shown, *ratios])
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return [line.rstrip() for line in lines]


def goals(samples: Samples) -> list[str]:
    lines = []
    for metric in METRICS:
        plain, tls = samples.median(metric, "plain", 0), samples.median(metric, "tls", 0)
        if not plain or tls is None:
            lines.append(f"{metric}: n/a")
            continue
        cost = 1 - tls / plain
        verdict = "PASS" if cost <= GOAL_COST else "MISS"
        lines.append(
            f"TLS cost on {metric} <= {GOAL_COST:.0%}: {cost:+.1%} ({tls / plain:.2f}x) {verdict}"
        )
    return lines


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--trials", type=int, default=None, help="trials (default 3, quick 1)")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs with taskset")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="after the trials, profile the TLS members with py-spy into this directory",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=Path(tempfile.gettempdir()) / "shoal-bench-security-logs",
        help="where the servers' logs are kept (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    trials = args.trials or (1 if args.quick else 3)
    duration = args.duration or (2 if args.quick else 5)
    if trials < 1 or duration < 1:
        parser.error("--trials and --duration must be >= 1")
    signal.signal(signal.SIGTERM, terminate)  # unwind, so every server is killed by PID
    ensure_tools()
    raise_nofile()
    server_cpus, loadgen_cpus = pick_cpus(not args.no_pin)
    if loadgen_cpus is not None:
        os.sched_setaffinity(0, {int(loadgen_cpus)})
    settings = Settings(
        duration_s=duration,
        failover_trials=0,
        watchers=0,
        server_cpus=server_cpus,
        loadgen_cpus=loadgen_cpus,
    )
    log(
        f"shoal plain vs TLS vs TLS+ACL, 3 members each; wrk -t1 -c{CONNECTIONS}, "
        f"{duration} s per run, {trials} trial(s) alternating; servers on CPUs "
        f"{server_cpus or 'any'}, wrk on {loadgen_cpus or 'any'}; load average {load()}"
    )
    started = time.monotonic()
    samples = run(settings, trials, args.logs, args.profile)
    print()
    for line in table(samples):
        print(line)
    print("(medians over the trials; ratio = variant/plain: above 1 is better for req/s)")
    print()
    for line in goals(samples):
        print("goal: " + line)
    for flag in samples.flags:
        print("note: " + flag)
    for line in samples.profile:
        print(line)
    print(f"load average after: {load()}; total {time.monotonic() - started:.0f} s")
    print(f"server logs: {args.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
