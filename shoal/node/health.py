"""Active health checks (HTTP and TCP), run by the leader, written to the store on change.

Theory of operation. One asyncio task per member wakes every `SCAN_SECONDS`. While this
member leads, it reads the registered instances from its store and, for each one with an
http/tcp check, starts a probe when the check's interval has passed since the last one
began (at most one probe per instance in flight). A probe is a GET of
`http://address:port{path}` (2xx/3xx passes) or a TCP connect, bounded by the check's
timeout. Each result goes through the pure rise/fall function `shoal.registry.observe`;
when the resulting status differs from the stored one, the checker writes the updated
instance -- a status change is a write, so every watcher learns of it at once. The write
is a txn guarded on the record's mod_revision, so a re-registration or deregistration
racing with a probe always wins; the next scan picks up the new record.

The same scan deletes instances that have been critical for longer than their
`deregister_after` (also guarded on mod_revision).

A new leader starts every check from the stored status with empty counters, so a
failover marks nothing critical until `fall` of its own probes fail.

Left for the next increment: checks are owned by the leader alone. DESIGN.md decision 7
and issue 4 want each check owned by exactly one live member, spread by consistent
hashing over the members and taken over when one dies; the scan-and-probe loop below is
the unit that would run per member over its share of the instances. The scan also reads
the whole registry prefix every tick, which is fine for thousands of instances, not for
hundreds of thousands (it should follow a watch instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import httpx

from ..kv import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    KeyValue,
    Put,
    Txn,
    prefix_end,
)
from ..registry import (
    SERVICES_PREFIX,
    CheckSpec,
    CheckState,
    Instance,
    RegistryError,
    observe,
    parse_instance_key,
)
from .member import Member, NotLeaderError, Unavailable

log = logging.getLogger("shoal.health")

SCAN_SECONDS = 0.05
FULL_SCAN_SECONDS = 1.0  # deregister_after is judged at this grain when nothing changes


@dataclass(slots=True)
class _Tracked:
    """What the checker holds for one instance while this member leads."""

    instance: Instance
    kv: KeyValue
    check: CheckSpec
    state: CheckState
    next_due: float
    probing: bool = False


class HealthChecker:
    def __init__(self, member: Member) -> None:
        self.member = member
        self._tracked: dict[bytes, _Tracked] = {}
        self._deleting: set[bytes] = set()
        # Decoded records by key, with the mod_revision they were decoded at: a pass over
        # ten thousand unchanged instances must not parse ten thousand JSON documents.
        self._decoded: dict[bytes, tuple[int, Instance | None]] = {}
        self._scanned_revision = -1
        self._last_full_scan = 0.0
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Start the loop if there is a running event loop and it is not running yet."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first registry request starts it
        self._task = loop.create_task(self._run(), name=f"health-{self.member.name}")

    async def stop(self) -> None:
        for task in [self._task, *self._probes]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._http is not None:
            await self._http.aclose()

    async def _run(self) -> None:
        self._http = httpx.AsyncClient(follow_redirects=False)
        while True:
            await asyncio.sleep(SCAN_SECONDS)
            try:
                self.scan(time.monotonic(), time.time())
            except Exception:  # a bad record must not stop every check
                log.exception("health scan failed")

    def scan(self, now: float, wall: float) -> None:
        """One pass: forget what is gone, start due probes, deregister the long-critical.

        The registry is re-read only when the store changed or once a second (for
        `deregister_after`); in between, only the tracked checks are looked at.
        """
        member = self.member
        if not member.is_leader:
            self._tracked.clear()
            self._scanned_revision = -1
            return
        changed = member.kv.revision != self._scanned_revision
        if changed or now - self._last_full_scan >= FULL_SCAN_SECONDS:
            self._full_scan(now, wall)
        else:
            for key, tracked in self._tracked.items():
                self._maybe_probe(key, tracked, now)

    def _decode(self, kv: KeyValue) -> Instance | None:
        cached = self._decoded.get(kv.key)
        if cached is not None and cached[0] == kv.mod_revision:
            return cached[1]
        instance: Instance | None
        try:
            instance = Instance.decode(kv.value)
        except RegistryError:
            instance = None
        self._decoded[kv.key] = (kv.mod_revision, instance)
        return instance

    def _maybe_probe(self, key: bytes, tracked: _Tracked, now: float) -> None:
        if not tracked.probing and now >= tracked.next_due:
            tracked.probing = True
            tracked.next_due = now + tracked.check.interval
            task = asyncio.create_task(self._probe(key, tracked))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    def _full_scan(self, now: float, wall: float) -> None:
        member = self.member
        self._scanned_revision = member.kv.revision
        self._last_full_scan = now
        seen: set[bytes] = set()
        start = SERVICES_PREFIX.encode()
        kvs = member.kv.range(start, prefix_end(start)).kvs
        for kv in kvs:
            if parse_instance_key(kv.key.decode("utf-8", "replace")) is None:
                continue
            instance = self._decode(kv)
            if instance is None:
                continue
            if instance.deregister_due(wall) and kv.key not in self._deleting:
                self._deregister(kv)
                continue
            check = instance.check
            if check is None or not check.is_active:
                continue
            seen.add(kv.key)
            tracked = self._tracked.get(kv.key)
            if tracked is None or tracked.check != check:
                tracked = _Tracked(instance, kv, check, CheckState(instance.health.status), now)
                self._tracked[kv.key] = tracked
            else:
                tracked.instance, tracked.kv = instance, kv
            self._maybe_probe(kv.key, tracked, now)
        for key in set(self._tracked) - seen:
            del self._tracked[key]
        if len(self._decoded) > len(kvs):
            present = {kv.key for kv in kvs}
            self._decoded = {k: v for k, v in self._decoded.items() if k in present}

    async def _probe(self, key: bytes, tracked: _Tracked) -> None:
        try:
            ok, reason = await self._run_check(tracked.instance, tracked.check)
            tracked.state = observe(
                tracked.state, ok, rise=tracked.check.rise, fall=tracked.check.fall
            )
            stored = self._tracked.get(key)
            if stored is not tracked or not self.member.is_leader:
                return  # the instance changed or went while we probed
            if tracked.state.status is not tracked.instance.health.status:
                await self._write_status(tracked, reason)
        finally:
            tracked.probing = False

    async def _run_check(self, instance: Instance, check: CheckSpec) -> tuple[bool, str]:
        if check.type == "http":
            assert self._http is not None
            url = f"http://{_host(instance.address)}:{instance.port}{check.path}"
            try:
                response = await self._http.get(url, timeout=check.timeout)
            except httpx.TimeoutException:
                return False, f"GET {check.path}: no answer within {check.timeout:g}s"
            except httpx.HTTPError as error:
                return False, f"GET {check.path}: {type(error).__name__}: {error}"
            ok = 200 <= response.status_code < 400
            return ok, f"GET {check.path}: HTTP {response.status_code}"
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(instance.address, instance.port), check.timeout
            )
        except TimeoutError:
            return False, f"TCP connect: no answer within {check.timeout:g}s"
        except OSError as error:
            return False, f"TCP connect: {error.strerror or error}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, "TCP connect: ok"

    async def _write_status(self, tracked: _Tracked, reason: str) -> None:
        updated = tracked.instance.with_health(tracked.state.status, reason, time.time())
        kv = tracked.kv
        command = Txn(
            compares=(
                Compare(
                    key=kv.key, target=CompareTarget.MOD_REVISION, op=CompareOp.EQ,
                    value=kv.mod_revision,
                ),
            ),
            success=(Put(key=kv.key, value=updated.encode(), lease=kv.lease),),
        )  # fmt: skip
        with contextlib.suppress(NotLeaderError, Unavailable):
            await self.member.propose(command)
            log.info(
                "%s/%s is %s: %s",
                updated.service, updated.id, updated.health.status.value, reason,
            )  # fmt: skip

    def _deregister(self, kv: KeyValue) -> None:
        self._deleting.add(kv.key)
        self._tracked.pop(kv.key, None)
        command = Txn(
            compares=(
                Compare(
                    key=kv.key, target=CompareTarget.MOD_REVISION, op=CompareOp.EQ,
                    value=kv.mod_revision,
                ),
            ),
            success=(Delete(key=kv.key),),
        )  # fmt: skip

        async def delete() -> None:
            try:
                with contextlib.suppress(NotLeaderError, Unavailable):
                    await self.member.propose(command)
            finally:
                self._deleting.discard(kv.key)

        task = asyncio.create_task(delete())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


__all__ = ["SCAN_SECONDS", "HealthChecker"]
