"""The supervisor behind `shoal up`: runs a manifest's processes and keeps them running.

Theory of operation (one asyncio loop, no threads):

- The control plane: unless the manifest (or `--endpoints`) names a running one, a
  single-member `shoal server` is started first, with its data in `.shoal/control-plane`
  beside the manifest, and everything waits until it has a leader. Then the manifest's
  config items are published where their content differs from what is stored.
- A service is a group of replicas, each a child process on a free loopback port of its
  own, numbered from 1; its instance id is `{service}-{number}`. A replica is *up* once
  its health path answers 200. A replica that exits without being asked is started
  again on the same port after a backoff that doubles from 0.5 s to 30 s, and falls back
  to 0.5 s once a run has lasted 30 s (what supervisord and systemd do, in spirit).
- `scale` starts new numbers or retires the highest ones; `restart` is rolling and
  surge-first: for each replica a new one (a new number) is started, and the old one is
  stopped only once the new one is up -- at no moment fewer replicas serve than before.
- Stopping a replica is SIGTERM (the SDK deregisters, waits, drains), then SIGKILL after
  the service's `stop_timeout`. Ctrl-C stops every replica that way at once, then the
  control plane.
- Children run in sessions of their own (Ctrl-C in the terminal reaches only the
  supervisor, which then stops them in order) and, on Linux, get SIGKILL should the
  supervisor itself die, so nothing is left behind.
- Every line a child prints is shown with a coloured `name |` prefix.
- The gateway (the manifest's `gateway:` section) is one more group, `gateway`, started
  with the services once the control plane is ready: each of its `workers` is a
  `python -m shoal.gateway` process of its own on the gateway's port (SO_REUSEPORT: the
  kernel spreads connections over them), with its admin port as the replica's port; it
  is up once its admin `/healthz` answers 200, i.e. once its route table is in force.
  So a crashed worker is restarted alone, and `shoal restart gateway` is rolling without
  refusing a connection (the new worker listens before the old one stops accepting).
  Inline routes are written to `gateway-routes.yaml` in the data directory at start.
- Security (the manifest's `security:`): the embedded control plane is started with
  `--tls-cert/--tls-key/--tls-ca` and, with a token, `--acl`; once it is ready its ACLs
  are bootstrapped with that token (a restart finds them bootstrapped and checks the
  token still works). Every child gets `SHOAL_TOKEN` and `SHOAL_TLS_*` (the client
  certificate, else the control plane's), which their SDK clients read; `shoal up`'s own
  calls use the same. Without `security:` nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped, unused-ignore]
from rich.console import Console
from rich.text import Text

from shoal.client import AsyncControlPlane, ShoalError
from shoal.testing.processes import free_port  # below the ephemeral range: see its doc

from .manifest import GATEWAY, GatewaySpec, Manifest, ServiceSpec, expand

__all__ = ["Supervisor"]

BACKOFF_MIN, BACKOFF_MAX, HEALTHY_RUN = 0.5, 30.0, 30.0
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
_SUFFIX_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the supervisor dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(eq=False)
class Replica:
    service: str
    number: int
    port: int
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"  # starting, up, crashed, stopping, stopped
    restarts: int = 0
    retired: bool = False
    task: asyncio.Task[None] | None = None
    up: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.number}"


@dataclass(eq=False)
class Group:
    name: str
    spec: ServiceSpec
    colour: str
    listen: int | None = None  # the gateway's port, which all its replicas share
    replicas: dict[int, Replica] = field(default_factory=dict)
    next_number: int = 1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def live(self) -> list[Replica]:
        return sorted((r for r in self.replicas.values() if not r.retired), key=lambda r: r.number)


class Supervisor:
    def __init__(
        self,
        manifest: Manifest,
        root: Path,
        *,
        endpoints: str | None = None,
        data_dir: Path | None = None,
        console: Console | None = None,
    ) -> None:
        self.manifest, self.root = manifest, root
        self.data = data_dir or root / ".shoal"
        self.console = console or Console(highlight=False)
        self.endpoints = endpoints or manifest.endpoints
        self.groups: dict[str, Group] = {}
        if manifest.gateway is not None:  # first: it starts with the services, not after
            self.groups[GATEWAY] = Group(
                GATEWAY, self._gateway_spec(manifest.gateway), "bright_green",
                listen=manifest.gateway.port,
            )  # fmt: skip
        for i, (name, spec) in enumerate(manifest.services.items()):
            self.groups[name] = Group(name, spec, _COLOURS[i % len(_COLOURS)])
        self._control_plane: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._pumps: set[asyncio.Task[None]] = set()

    # -- security ------------------------------------------------------------------

    @property
    def _tls_files(self) -> dict[str, str]:
        """The PEM files of `security.tls`, as absolute paths (children run elsewhere)."""
        security = self.manifest.security
        if security is None or security.tls is None:
            return {}
        return {name: str(self.root / path) for name, path in security.tls.files().items()}

    @property
    def _token(self) -> str | None:
        return self.manifest.security.token if self.manifest.security is not None else None

    def security_env(self) -> dict[str, str]:
        """What a child's SDK client needs to reach a secured control plane."""
        env: dict[str, str] = {}
        if self._token is not None:
            env["SHOAL_TOKEN"] = self._token
        files = self._tls_files
        if files:
            env["SHOAL_TLS_CA"] = files["ca"]
            cert, key = (
                files.get("client_cert", files.get("cert")),
                files.get("client_key", files.get("key")),
            )
            if cert is not None and key is not None:
                env["SHOAL_TLS_CERT"], env["SHOAL_TLS_KEY"] = cert, key
        return env

    def _client_options(self) -> dict[str, Any]:
        env = self.security_env()
        return {
            "token": env.get("SHOAL_TOKEN"),
            "tls_ca": env.get("SHOAL_TLS_CA"),
            "tls_cert": env.get("SHOAL_TLS_CERT"),
            "tls_key": env.get("SHOAL_TLS_KEY"),
        }

    def _verify(self) -> ssl.SSLContext | bool:
        env = self.security_env()
        if "SHOAL_TLS_CA" not in env:
            return True
        context = ssl.create_default_context(cafile=env["SHOAL_TLS_CA"])
        if "SHOAL_TLS_CERT" in env:
            context.load_cert_chain(env["SHOAL_TLS_CERT"], env["SHOAL_TLS_KEY"])
        return context

    @property
    def socket_path(self) -> Path:
        return self.data / "up.sock"

    @property
    def gateway_routes_path(self) -> Path:
        return self.data / "gateway-routes.yaml"

    @property
    def gateway_url(self) -> str | None:
        gateway = self.manifest.gateway
        if gateway is None:
            return None
        host = "127.0.0.1" if gateway.host in ("0.0.0.0", "::", "") else gateway.host
        return f"http://{host}:{gateway.port}"

    def _gateway_spec(self, gateway: GatewaySpec) -> ServiceSpec:
        """The gateway as a group of replicas: one worker process each; see the module doc."""
        argv = [
            "python", "-m", "shoal.gateway",
            "--host", gateway.host, "--port", str(gateway.port),
            "--admin-port", "{port}",  # the replica's own port: its health is /healthz there
            "--access-log", gateway.access_log,
        ]  # fmt: skip
        if gateway.routes is not None:
            argv += ["--routes", str(self.gateway_routes_path)]
        elif gateway.routes_file is not None:
            argv += ["--routes", str(self.root / gateway.routes_file)]
        if gateway.routes_item is not None:
            argv += ["--routes-item", gateway.routes_item]
        if gateway.policy is not None:
            argv += ["--policy", json.dumps(gateway.policy)]
        return ServiceSpec(
            command=shlex.join(argv),
            replicas=gateway.workers,
            health="/healthz",
            start_timeout=gateway.start_timeout,
            stop_timeout=gateway.stop_timeout,
        )

    def _write_gateway_routes(self) -> None:
        gateway = self.manifest.gateway
        if gateway is not None and gateway.routes is not None:
            text = yaml.safe_dump(gateway.table(), sort_keys=False)
            self.gateway_routes_path.write_text(text, encoding="utf-8")

    # -- the whole run -----------------------------------------------------------------

    async def run(self, on_ready: Callable[[], object] | None = None) -> int:
        self.data.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        from .control import serve_control

        control = await serve_control(self, self.socket_path)
        try:
            if self.endpoints is None:
                self.endpoints = await self._start_control_plane()
            await self._seed_config()
            self._write_gateway_routes()
            for group in self.groups.values():
                await self.scale(group.name, group.spec.replicas, wait=False)
            await asyncio.wait_for(self._all_up(), self._start_budget())
            self._print_summary()
            if on_ready is not None:
                on_ready()
            await self._stopping.wait()
            self.say(
                "shoal", "yellow", "stopping: every replica gets SIGTERM, then the control plane"
            )
            return 0
        except TimeoutError:
            self.say("shoal", "red", "not every replica came up in time; stopping")
            return 1
        except (ShoalError, OSError, RuntimeError) as error:
            self.say("shoal", "red", f"error: {error}")
            return 1
        finally:
            control.close()
            await self._stop_everything()
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        self._stopping.set()

    def _start_budget(self) -> float:
        return max(g.spec.start_timeout for g in self.groups.values()) + 30.0

    async def _all_up(self) -> None:
        for group in self.groups.values():
            for replica in group.live():
                await replica.up.wait()

    async def _stop_everything(self) -> None:
        replicas = [r for g in self.groups.values() for r in g.live()]
        await asyncio.gather(*(self._retire(r) for r in replicas), return_exceptions=True)
        if self._control_plane is not None:
            await self._terminate(self._control_plane, 15.0)
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(pump, 2)

    # -- output ------------------------------------------------------------------------

    def say(self, name: str, colour: str, line: str) -> None:
        text = Text(f"{name:<12} | ", style=colour)
        text.append(line)
        self.console.print(text, soft_wrap=True)

    def _print_summary(self) -> None:
        self.say("shoal", "bold", f"{self.manifest.name} is up; control plane at {self.endpoints}")
        if self.gateway_url is not None:
            self.say("shoal", "bold", f"  gateway: {self.gateway_url}")
        for group in self.groups.values():
            what = "admin" if group.listen is not None else ""
            ports = ", ".join(f"{r.name} {what}:{r.port}" for r in group.live())
            self.say("shoal", "bold", f"  {group.name}: {ports or 'no replicas'}")
        self.say(
            "shoal",
            "bold",
            "Ctrl-C stops everything; `shoal scale SERVICE=N`, `shoal restart SERVICE`",
        )

    async def _pump(self, name: str, colour: str, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            line = await stream.readline()
            if not line:
                return
            self.say(name, colour, line.decode("utf-8", "replace").rstrip())

    def _spawn_pump(self, name: str, colour: str, stream: asyncio.StreamReader | None) -> None:
        task = asyncio.create_task(self._pump(name, colour, stream))
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    # -- the control plane -------------------------------------------------------------

    async def _start_control_plane(self) -> str:
        spec = self.manifest.control_plane
        client = f"{spec.host}:{spec.port}"
        files = self._tls_files
        url = f"{'https' if files else 'http'}://{client}"
        with contextlib.suppress(OSError), socket.create_connection((spec.host, spec.port), 0.5):
            raise RuntimeError(
                f"something already listens on {client}; set control_plane.port or --endpoints"
            )
        argv = [
            sys.executable, "-m", "shoal.cli.main", "server",
            "--name", "up",
            "--data-dir", str(self.data / "control-plane"),
            "--client-addr", client,
            "--peer-addr", f"{spec.host}:{spec.port + 1}",
        ]  # fmt: skip
        if files:
            if "cert" not in files:
                raise RuntimeError("security.tls: the control plane needs cert and key")
            argv += [
                "--tls-cert",
                files["cert"],
                "--tls-key",
                files["key"],
                "--tls-ca",
                files["ca"],
            ]
        if self._token is not None:
            argv.append("--acl")
        self._control_plane = await self._exec(argv, os.environ.copy())
        self._spawn_pump("shoal server", "bright_black", self._control_plane.stdout)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1, verify=self._verify()) as http:
            while time.monotonic() < deadline:
                if self._control_plane.returncode is not None:
                    raise RuntimeError("the control plane exited at start; see its lines above")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/readyz")).status_code == 200:
                        await self._bootstrap(http, url)
                        return url
                await asyncio.sleep(0.05)
        raise RuntimeError("the control plane did not get ready within 30 s")

    async def _bootstrap(self, http: httpx.AsyncClient, url: str) -> None:
        """Make `security.token` the ACL management token, or check that it is already."""
        token = self._token
        if token is None:
            return
        answer = await http.post(url + "/api/v1/acl/bootstrap", json={"token": token}, timeout=10)
        if answer.status_code == 200:
            self.say("shoal", "bold", "ACLs bootstrapped with security.token")
            return
        if answer.status_code == 409:
            bearer = {"authorization": f"Bearer {token}"}
            for _ in range(50):  # a restarted member may still be applying its log
                mine = await http.get(url + "/api/v1/acl/token/self", headers=bearer)
                if mine.status_code == 200:
                    return
                await asyncio.sleep(0.1)
            raise RuntimeError(
                f"the control plane in {self.data / 'control-plane'} was bootstrapped with "
                "another token than security.token"
            )
        raise RuntimeError(f"ACL bootstrap failed: {answer.status_code} {answer.text}")

    async def _seed_config(self) -> None:
        if not self.manifest.config:
            return
        assert self.endpoints is not None
        async with AsyncControlPlane(self.endpoints, **self._client_options()) as cp:
            for item, seed in self.manifest.config.items():
                if seed.file is not None:
                    path = self.root / seed.file
                    content = path.read_text(encoding="utf-8")
                    fmt = seed.format or _SUFFIX_FORMATS.get(path.suffix.lower(), "text")
                else:
                    content, fmt = seed.content or "", seed.format or "text"
                try:
                    current = await cp.config.get(item)
                except ShoalError:
                    current = None
                if current is not None and current.get("content") == content:
                    continue
                done = await cp.config.publish(item, content, fmt, author="shoal up")
                self.say("shoal", "bold", f"published {item} version {done['version']}")

    # -- replicas ----------------------------------------------------------------------

    def _env(self, group: Group, replica: Replica) -> tuple[list[str], dict[str, str]]:
        values = {
            "port": replica.port,
            "replica": replica.number,
            "service": group.name,
            "data": self.data,
            "root": self.root,
        }
        argv = [expand(word, **values) for word in shlex.split(group.spec.command)]
        env = {
            **os.environ,
            **self.security_env(),  # before the service's env: it may narrow the token
            **{k: expand(v, **values) for k, v in group.spec.env.items()},
            "SHOAL_ENDPOINTS": self.endpoints or "",
            "SHOAL_INSTANCE_ID": replica.name,
            "PORT": str(replica.port),
            "PYTHONUNBUFFERED": "1",
        }
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the interpreter shoal runs on, with its packages
        return argv, env

    async def _exec(self, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    async def _keep(self, group: Group, replica: Replica) -> None:
        """Run `replica` until it is retired, restarting it whenever it dies."""
        delay = BACKOFF_MIN
        while not replica.retired:
            argv, env = self._env(group, replica)
            started = time.monotonic()
            try:
                replica.process = await self._exec(argv, env)
            except OSError as error:
                self.say(replica.name, "red", f"cannot start {argv[0]}: {error}")
                replica.state = "crashed"
                replica.up.set()  # do not hold up the start: it is reported
                return
            replica.state = "starting"
            self._spawn_pump(replica.name, group.colour, replica.process.stdout)
            if replica.retired:  # retired while it was being started
                await self._terminate(replica.process, group.spec.stop_timeout)
                break
            watcher = asyncio.create_task(self._wait_healthy(group, replica))
            code = await replica.process.wait()
            watcher.cancel()
            if replica.retired:
                break
            replica.state = "crashed"
            replica.restarts += 1
            if time.monotonic() - started >= HEALTHY_RUN:
                delay = BACKOFF_MIN
            self.say(replica.name, "red", f"exited with status {code}; restarting in {delay:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                break
            delay = min(delay * 2, BACKOFF_MAX)
        replica.state = "stopped"

    async def _wait_healthy(self, group: Group, replica: Replica) -> None:
        url = f"http://127.0.0.1:{replica.port}{group.spec.health}"
        deadline = time.monotonic() + group.spec.start_timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        replica.state = "up"
                        replica.up.set()
                        return
                await asyncio.sleep(0.05)
        self.say(replica.name, "red", f"not healthy at {url} after {group.spec.start_timeout:g} s")
        replica.up.set()

    def _start(self, group: Group) -> Replica:
        replica = Replica(group.name, group.next_number, free_port())
        group.next_number += 1
        group.replicas[replica.number] = replica
        replica.task = asyncio.create_task(self._keep(group, replica))
        return replica

    async def _retire(self, replica: Replica) -> None:
        replica.retired = True
        replica.state = "stopping"
        group = self.groups[replica.service]
        if replica.process is not None and replica.process.returncode is None:
            await self._terminate(replica.process, group.spec.stop_timeout)
        if replica.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await replica.task
        replica.state = "stopped"
        group.replicas.pop(replica.number, None)

    async def _terminate(self, process: asyncio.subprocess.Process, timeout: float) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # -- what `shoal scale` / `shoal restart` / `shoal ps` ask for ---------------------

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            known = ", ".join(self.groups)
            raise KeyError(f"no service {name!r} in this application (it has: {known})")
        return group

    async def scale(self, name: str, count: int, *, wait: bool = True) -> list[str]:
        """Run `count` replicas of `name`; the replicas it has afterwards."""
        group = self.group(name)
        if not 0 <= count <= 64:
            raise ValueError(f"replicas must be between 0 and 64, got {count}")
        async with group.lock:
            live = group.live()
            started = [self._start(group) for _ in range(count - len(live))]
            for replica in live[count:][::-1]:
                await self._retire(replica)
            if wait:
                for replica in started:
                    await replica.up.wait()
        return [r.name for r in group.live()]

    async def restart(self, name: str) -> list[str]:
        """Rolling, surge-first restart of every replica of `name` (see the module doc)."""
        group = self.group(name)
        async with group.lock:
            for old in group.live():
                new = self._start(group)
                await new.up.wait()
                if new.state != "up":
                    raise RuntimeError(f"{new.name} did not come up; {old.name} is kept")
                self.say("shoal", "bold", f"{new.name} is up; stopping {old.name}")
                await self._retire(old)
        return [r.name for r in group.live()]

    def status(self) -> dict[str, Any]:
        return {
            "name": self.manifest.name,
            "endpoints": self.endpoints,
            "gateway": self.gateway_url,
            "services": {
                g.name: [
                    {
                        "name": r.name,
                        "port": g.listen if g.listen is not None else r.port,
                        "state": r.state,
                        "restarts": r.restarts,
                        "pid": r.process.pid if r.process else None,
                        **({"admin_port": r.port} if g.listen is not None else {}),
                    }
                    for r in g.live()
                ]
                for g in self.groups.values()
            },
        }
