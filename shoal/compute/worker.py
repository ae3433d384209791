"""``shoal worker``: a process that runs tasks for ``ShoalExecutor`` drivers.

Theory of operation
-------------------
A worker is an asyncio TCP server (uvloop when installed) that registers itself in the
control plane's registry as an instance of the service ``shoal-workers`` (instance id =
worker id; address and port = its TCP server; metadata: ``slots``, ``resources``, ``pid``)
attached to a lease it holds open with the keep-alive stream
(``shoal.client.RegistrationHolder``, the same holder a ``shoal.Service`` uses). The
control plane revokes the lease the moment the stream's connection closes, so a worker
that dies -- even by SIGKILL -- vanishes from discovery within milliseconds, and drivers
reschedule its tasks.

Each driver connection gets its own ``slots`` slot processes (``_slots.serve``, the same
task loop the local executor's workers run), started by a multiprocessing forkserver:
the children inherit none of the worker's sockets (so a dead worker's connections really
close) and die with it. The worker only relays bytes: a ``RUN`` frame's payload goes to
its slot process as is, and every batch of results comes back as a ``RESULTS`` frame;
nothing is unpickled here. A slot process that dies (a task crashed it, or the driver
asked for a ``RESTART`` to stop a running attempt) is reported ``SLOT_DOWN`` and replaced
by the next generation (``SLOT_UP``). When the driver goes away, its slot processes are
killed: nobody is left to want their results.

With a token (``--token`` / ``SHOAL_TOKEN``), a driver's first frame must be ``AUTH``
carrying the same token, compared in constant time (``hmac.compare_digest``) within
``AUTH_TIMEOUT``; anything else gets a ``REFUSED`` frame and the connection closed
before a slot process starts or another byte is read, so an unauthenticated peer never
gets a payload to a process that unpickles it.

With TLS (``--tls-cert/--tls-key/--tls-ca``, ``worker_tls``) the port speaks only TLS:
the handshake comes first (within ``AUTH_TIMEOUT``), then the token as above, so job data
crosses the network encrypted; with ``--client-cert-required`` a driver without a
certificate signed by the CA fails the handshake, before any frame is read. The worker's
registry metadata says ``tls: "1"``, which is how drivers know to speak TLS to it.

It never runs a task itself and never decides anything about scheduling: that is the
driver's (the pure scheduler in ``scheduler.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import multiprocessing
import multiprocessing.forkserver
import os
import re
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from shoal.client import AsyncControlPlane
from shoal.client.registration import RegistrationHolder
from shoal.client.registry import Registration

from . import _frames as fr
from . import worker_metrics as metrics
from ._slots import slot_main
from .errors import ExecutorError
from .worker_tls import WorkerTls

__all__ = ["Worker", "parse_resources", "run_worker"]

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
AUTH_TIMEOUT = 10.0  # seconds a driver has to present its token


def parse_resources(text: str) -> dict[str, float]:
    """``"cpu=2,memory=4e9,gpu=1"`` -> ``{"cpu": 2.0, "memory": 4e9, "gpu": 1.0}``."""
    out: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, amount = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"expected NAME=AMOUNT, got {item!r}")
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"resource {name!r}: {amount!r} is not a number") from None
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"resource {name!r} must be a finite number >= 0, got {amount!r}")
        out[name] = value
    return out


def default_worker_id() -> str:
    host = _SAFE_ID.sub("-", socket.gethostname()).strip("-.") or "host"
    return f"{host}-{os.getpid()}"


@dataclass(slots=True, eq=False)
class _Slot:
    index: int
    gen: int
    process: BaseProcess
    writer: asyncio.StreamWriter
    pump: asyncio.Task[None] | None = None
    restart_requested: bool = False  # the driver asked (RESTART): not a crash
    counted: bool = True  # in the slot-process gauge (taken out exactly once)


@dataclass(slots=True, eq=False)
class _Session:
    """One driver connection and the slot processes that serve it."""

    writer: asyncio.StreamWriter
    slots: list[_Slot | None] = field(default_factory=list)
    closed: bool = False


class Worker:
    """The worker process's state; ``await serve()`` runs it until ``stop()``."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        slots: int = 1,
        resources: Mapping[str, float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise: str | None = None,
        worker_id: str | None = None,
        ttl: int = 10,
        flush_every: int = 8,
        metrics_port: int | None = None,
        token: str | None = None,
        tls: WorkerTls | None = None,
    ) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ExecutorError(f"slots must be a positive int, got {slots!r}")
        self.servers = [s.rstrip("/") for s in servers]
        if not self.servers:
            raise ExecutorError("a worker needs the URL of the control plane (--server)")
        self.slots = slots
        self.resources = dict(resources) if resources else {"cpu": float(slots)}
        self.host = host
        self.port = port
        self.advertise = advertise or (
            host
            if host not in ("", "0.0.0.0", "::")
            else socket.gethostbyname(socket.gethostname())
        )
        self.worker_id = worker_id or default_worker_id()
        self.ttl = ttl
        self.flush_every = flush_every
        self.metrics_port = metrics_port  # None: no endpoint; 0: any free port
        self._token = token.encode() if token else None  # drivers must present it
        self._ssl = tls.server_context() if tls is not None else None  # bad files fail here
        self._metrics: metrics.MetricsServer | None = None
        self._ctx: Any = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_preload())
        self._sessions: set[_Session] = set()
        self._stopping: asyncio.Event | None = None
        self._announced = False

    # -- lifecycle --

    async def serve(self, ready: asyncio.Future[int] | None = None) -> None:
        self._stopping = asyncio.Event()
        await asyncio.to_thread(multiprocessing.forkserver.ensure_running)
        tls: dict[str, Any] = {}
        if self._ssl is not None:
            tls = {"ssl": self._ssl, "ssl_handshake_timeout": AUTH_TIMEOUT}
        server = await asyncio.start_server(self._accept, self.host, self.port, **tls)
        self.port = int(server.sockets[0].getsockname()[1])
        if self.metrics_port is not None:
            self._metrics = metrics.serve_metrics(self.host, self.metrics_port)
            self.metrics_port = self._metrics.port
        plane = AsyncControlPlane(self.servers, timeout=10.0)
        holder = RegistrationHolder(
            plane,
            fr.SERVICE,
            self.worker_id,
            ttl=self.ttl,
            on_registered=self._announce,
            **self._instance_fields(),
        )
        registration = asyncio.create_task(holder.run())
        if ready is not None and not ready.done():
            ready.set_result(self.port)
        try:
            await self._stopping.wait()
        finally:
            registration.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await registration
            server.close()
            await holder.deregister()
            await plane.aclose()
            for session in list(self._sessions):
                await self._end_session(session)
            if self._metrics is not None:
                self._metrics.close()

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    # -- registration --

    def _instance_fields(self) -> dict[str, Any]:
        metadata = {
            "slots": str(self.slots),
            "resources": json.dumps(self.resources, separators=(",", ":")),
            "pid": str(os.getpid()),
        }
        if self._metrics is not None:  # where Prometheus (and the dashboard) scrape it
            metadata["metrics_port"] = str(self._metrics.port)
        if self._ssl is not None:
            metadata["tls"] = "1"  # drivers speak TLS to it (and only to it)
        return {"address": self.advertise, "port": self.port, "metadata": metadata}

    def _announce(self, registration: Registration) -> None:
        if not self._announced:
            self._announced = True
            _log(
                f"shoal worker {self.worker_id} ({self.slots} slots, resources "
                f"{self.resources}) listening on {self.advertise}:{self.port}, registered "
                f"at revision {registration.revision}"
            )

    # -- driver sessions --

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._token is not None and not await self._authenticated(reader):
            # Before any slot process exists or any job byte is read; the reason lets the
            # driver say what is wrong instead of retrying in silence.
            refusal = {"reason": f"worker {self.worker_id} refused the driver's token"}
            with contextlib.suppress(OSError):
                writer.write(fr.frame(fr.REFUSED, 0, 0, json.dumps(refusal).encode()))
            writer.close()
            return
        session = _Session(writer, [None] * self.slots)
        self._sessions.add(session)
        metrics.DRIVERS.inc()
        try:
            for index in range(self.slots):
                await self._start_slot(session, index, 1)
            hello = {
                "worker_id": self.worker_id,
                "slots": self.slots,
                "resources": self.resources,
                "pid": os.getpid(),
            }
            writer.write(fr.frame(fr.HELLO, 0, 0, json.dumps(hello).encode()))
            for slot in session.slots:
                assert slot is not None
                writer.write(fr.frame(fr.SLOT_UP, slot.index, slot.gen, _pid_json(slot.process)))
            await self._read_driver(session, reader)
        except (OSError, asyncio.IncompleteReadError, ExecutorError):
            pass
        finally:
            await self._end_session(session)

    async def _authenticated(self, reader: asyncio.StreamReader) -> bool:
        """Whether the driver's first frame is ``AUTH`` with this worker's token."""
        assert self._token is not None
        try:
            async with asyncio.timeout(AUTH_TIMEOUT):
                size, kind, _, _ = fr.HEADER.unpack(await reader.readexactly(fr.HEADER.size))
                if kind != fr.AUTH or size > fr.MAX_TOKEN:
                    return False
                presented = await reader.readexactly(size)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        return hmac.compare_digest(presented, self._token)

    async def _read_driver(self, session: _Session, reader: asyncio.StreamReader) -> None:
        header_size = fr.HEADER.size
        unpack = fr.HEADER.unpack
        while True:
            header = await reader.readexactly(header_size)
            size, kind, index, gen = unpack(header)
            payload = await reader.readexactly(size) if size else b""
            if index >= len(session.slots):
                continue
            slot = session.slots[index]
            if slot is None or slot.gen != gen:
                continue  # meant for a process that is gone
            if kind == fr.RUN:
                slot.writer.write(len(payload).to_bytes(4, "big") + payload)
                metrics.RUN_BATCHES.inc()
            elif kind == fr.RESTART:
                slot.restart_requested = True
                slot.process.kill()  # its pump sees EOF and starts the next generation

    async def _start_slot(self, session: _Session, index: int, gen: int) -> _Slot:
        parent, child = socket.socketpair()
        try:
            process = self._ctx.Process(
                target=slot_main,
                args=(child, self.flush_every),
                name=f"shoal-worker-{self.worker_id}-slot{index}",
                daemon=True,
            )
            await asyncio.to_thread(process.start)
        except OSError as error:
            parent.close()
            raise ExecutorError(f"could not start a slot process: {error}") from error
        finally:
            child.close()
        reader, writer = await asyncio.open_connection(sock=parent)
        slot = _Slot(index, gen, process, writer)
        session.slots[index] = slot
        metrics.SLOTS.inc()
        slot.pump = asyncio.create_task(self._pump(session, slot, reader))
        return slot

    async def _pump(self, session: _Session, slot: _Slot, reader: asyncio.StreamReader) -> None:
        """Relay a slot process's result batches to the driver until the process ends."""
        out = session.writer
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                data = await reader.readexactly(size)
                out.write(fr.HEADER.pack(size, fr.RESULTS, slot.index, slot.gen) + data)
                metrics.RESULT_BATCHES.inc()
                metrics.RESULT_BYTES.inc(size)
                await out.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        if session.closed:
            return
        await asyncio.to_thread(slot.process.join, 5.0)
        _uncount(slot)
        metrics.SLOT_RESTARTS.labels("requested" if slot.restart_requested else "crashed").inc()
        reason = f"slot process {slot.process.pid} exited with code {slot.process.exitcode}"
        slot.writer.close()
        with contextlib.suppress(OSError, ExecutorError):
            out.write(
                fr.frame(
                    fr.SLOT_DOWN, slot.index, slot.gen, json.dumps({"reason": reason}).encode()
                )
            )
            fresh = await self._start_slot(session, slot.index, slot.gen + 1)
            if session.closed:  # the driver left while it started: nobody needs it
                fresh.process.kill()
                fresh.writer.close()
                return
            out.write(fr.frame(fr.SLOT_UP, fresh.index, fresh.gen, _pid_json(fresh.process)))

    async def _end_session(self, session: _Session) -> None:
        if session.closed:
            return
        session.closed = True
        self._sessions.discard(session)
        metrics.DRIVERS.dec()
        for slot in session.slots:
            if slot is None:
                continue
            _uncount(slot)
            if slot.process.is_alive():
                slot.process.kill()
            slot.writer.close()
            if slot.pump is not None:
                slot.pump.cancel()
        for slot in session.slots:
            if slot is not None:
                await asyncio.to_thread(slot.process.join, 2.0)
        session.writer.close()


def _preload() -> list[str]:
    """Modules the forkserver imports once, so a new slot process starts warm.

    A forkserver child re-runs the parent's ``__main__`` module (for ``shoal worker``,
    ``shoal.cli.main``: typer, rich, every command); preloading it makes that re-run
    cheap, since everything it imports is already loaded.
    """
    names = ["shoal.compute._forkserver_init", "shoal.compute", "cloudpickle"]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        names.insert(1, name)
    return names


def _uncount(slot: _Slot) -> None:
    if slot.counted:
        slot.counted = False
        metrics.SLOTS.dec()


def _pid_json(process: BaseProcess) -> bytes:
    return json.dumps({"pid": process.pid}).encode()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_worker(worker: Worker) -> None:
    """Run ``worker`` until SIGTERM or SIGINT (uvloop if installed)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, worker.stop)
        await worker.serve()

    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
