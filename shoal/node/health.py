"""Active health checks (HTTP and TCP), each run by exactly one live member; status
changes are written to the store.

Who checks what. The leader keeps the roster of live voters in the store at
`CHECKERS_KEY` (duties.py: a voter is live while the leader hears from it, Raft's
CheckQuorum activity, debounced over two election timeouts). Every member -- leader or
follower -- runs this checker over the instances it owns: the roster member that wins
rendezvous hashing of the instance key (`shoal.registry.check_owner`). Every member
computes the same owner from the same roster without talking to the others; when a member
dies, the leader drops it from the roster and only that member's checks move, spread over
the survivors. With no roster (a cluster of one, or before a new cluster's leader has
written one) the leader owns every check.

Theory of operation. One asyncio task per member wakes every `SCAN_SECONDS`. It reads the
roster and the registered instances from its own applied store (a follower's may lag a
little) and, for each owned instance with an http/tcp check, starts a probe when the
check's interval has passed since the last one began (at most one probe per instance in
flight). A probe is a GET of `http://address:port{path}` (2xx/3xx passes) or a TCP
connect, bounded by the check's timeout. Each result goes through the pure rise/fall
function `shoal.registry.observe`; when the resulting status differs from the stored one,
the checker writes the updated instance -- a status change is a write, so every watcher
learns of it at once. The write is a txn guarded on the record's mod_revision: the leader
proposes it, a follower posts it to the leader's `/api/v1/txn` through the member's one
forwarding path (`routing.LeaderLink`). So a stale view (a
lagging follower, an owner the roster has just dropped, a re-registration racing with a
probe) can at worst write what it really observed onto the record it saw; anything newer
makes the guard refuse the write, the next scan picks up the new record and the next
probe tries again.

The same scan deletes the owned instances that have been critical for longer than their
`deregister_after` (also guarded on mod_revision).

A member that gains a check -- at start, on a roster change, on takeover from a dead
member -- starts it from the stored status with empty counters, so a takeover (or a leader
failover) marks nothing critical until `fall` of its own probes fail; one that loses a
check forgets it. A dead member's checks run nowhere until the leader drops it from the
roster: about two election timeouts (~1.5 s measured on loopback), plus the election when
the leader itself died. `GET /api/v1/health/checks` (api_health.py) shows what a member
checks.

A member follows the registry through a hub watcher on its prefix: each pass applies
only the records that changed since the last one (decoded once per mod_revision,
ownership cached per key), and reads the whole prefix again only at start, when the
roster changes, or when the watcher was cut off (it fell 10,000 events behind, or a
snapshot replaced the store). Instances with `deregister_after` are judged once a second
from a small index, without a walk. During a takeover two members may both probe an
instance for a moment (the old owner until it sees the new roster) -- harmless, since
the writes are guarded, but not free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..kv import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    Event,
    EventType,
    KeyValue,
    KvError,
    Put,
    Txn,
    TxnResult,
    WatchFilter,
    prefix_end,
)
from ..registry import (
    SERVICES_PREFIX,
    CheckSpec,
    CheckState,
    Instance,
    RegistryError,
    check_owner,
    observe,
    parse_instance_key,
    parse_roster,
)
from .api_errors import ApiError
from .duties import CHECKERS_KEY
from .member import Member, NotLeaderError, Unavailable
from .routing import LeaderLink
from .watchhub import Watcher

log = logging.getLogger("shoal.health")

SCAN_SECONDS = 0.05
FULL_SCAN_SECONDS = 1.0  # deregister_after is judged at this grain when nothing changes


@dataclass(slots=True)
class _Tracked:
    """What the checker holds for one instance while this member owns its check."""

    instance: Instance
    kv: KeyValue
    check: CheckSpec
    state: CheckState
    next_due: float
    owned_since: float  # wall clock, for operators
    probing: bool = False
    probes: int = 0
    last_ok: bool | None = None
    last_reason: str = ""
    last_at: float = 0.0  # wall clock of the last result


class HealthChecker:
    """The active checks one member runs; one per member, built, started and stopped by
    its lifespan (lifespan.py)."""

    def __init__(self, member: Member, link: LeaderLink) -> None:
        self.member = member
        self._link = link
        self._tracked: dict[bytes, _Tracked] = {}
        # The roster the tracked set was chosen under (None: no roster, the leader checks
        # all), with the roster record's mod_revision, and ownership decided under it.
        self._roster: tuple[str, ...] | None = None
        self._roster_revision = 0
        self._owned: dict[bytes, bool] = {}
        self._deleting: set[bytes] = set()
        # Decoded records by key, with the mod_revision they were decoded at: a pass over
        # ten thousand unchanged instances must not parse ten thousand JSON documents.
        self._decoded: dict[bytes, tuple[int, Instance | None]] = {}
        # Changes to the registry arrive through a hub watcher; the whole prefix is read
        # again only when there is none yet, it was cut off, or the roster changed.
        self._watcher: Watcher | None = None
        self._rescan = True
        # Instances with `deregister_after`, judged once a second without a full read.
        self._expiring: dict[bytes, KeyValue] = {}
        self._last_expiry_check = 0.0
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    @property
    def roster(self) -> tuple[str, ...] | None:
        """The members that run checks, as this member last read them (None: no roster)."""
        return self._roster

    def tracked(self) -> list[dict[str, Any]]:
        """The checks this member owns now, for the API: one JSON object each."""
        out = []
        for key, t in sorted(self._tracked.items()):
            instance, check = t.instance, t.check
            target = f"{_host(instance.address)}:{instance.port}"
            out.append(
                {
                    "key": key.decode("utf-8", "replace"),
                    "service": instance.service,
                    "id": instance.id,
                    "type": check.type,
                    "target": f"http://{target}{check.path}" if check.type == "http" else target,
                    "interval": check.interval,
                    "stored_status": instance.health.status.value,
                    "status": t.state.status.value,
                    "successes": t.state.successes,
                    "failures": t.state.failures,
                    "probes": t.probes,
                    "owned_since": t.owned_since,
                    "last": (
                        None
                        if t.last_ok is None
                        else {"ok": t.last_ok, "reason": t.last_reason, "at": t.last_at}
                    ),
                }
            )
        return out

    def start(self) -> None:
        """Start scanning (from within the event loop the member runs on)."""
        if self._task is not None:
            raise RuntimeError("HealthChecker.start called twice")
        self._http = httpx.AsyncClient(follow_redirects=False)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"health-{self.member.name}"
        )

    async def stop(self) -> None:
        """Stop scanning, cancel the probes and writes in flight, close the probe client."""
        self._unwatch()
        for task in [self._task, *self._probes]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SCAN_SECONDS)
            try:
                self.scan(time.monotonic(), time.time())
            except Exception:  # a bad record must not stop every check
                log.exception("health scan failed")

    def scan(self, now: float, wall: float) -> None:
        """One pass: apply the registry's changes since the last pass (forget what is gone
        or no longer ours, pick up what is new), start due probes, deregister the
        long-critical.

        Only the changed records are looked at: a store busy with registrations costs a
        member the events it applies, not a walk over every instance per pass.
        """
        member = self.member
        self._read_roster()
        checking = member.name in self._roster if self._roster is not None else member.is_leader
        if not checking:
            if self._tracked:
                self._tracked.clear()
                member.metrics.checks_owned.set(0)
            self._unwatch()
            return
        watcher = self._watcher
        if watcher is None or watcher.closed is not None or self._rescan:
            self._full_scan(now, wall)
        else:
            for event in watcher.drain():
                self._on_event(event, now, wall)
            member.metrics.checks_owned.set(len(self._tracked))
        for key, tracked in self._tracked.items():
            self._maybe_probe(key, tracked, now)
        if now - self._last_expiry_check >= FULL_SCAN_SECONDS:
            self._last_expiry_check = now
            for kv in list(self._expiring.values()):
                self._consider(kv, now, wall)

    def _unwatch(self) -> None:
        if self._watcher is not None:
            self.member.hub.unsubscribe(self._watcher)
            self._watcher = None
        self._rescan = True

    def _read_roster(self) -> None:
        record = self.member.kv.get(CHECKERS_KEY)
        revision = record.mod_revision if record is not None else 0
        if revision == self._roster_revision:
            return
        roster = parse_roster(record.value) if record is not None else None
        if roster is None and record is not None:
            log.warning("ignoring an unreadable health-check roster: %r", record.value[:200])
        self._roster_revision = revision
        if roster != self._roster:
            self._roster = roster
            self._owned.clear()
            self._rescan = True  # re-decide every check at once

    def _owns(self, key: bytes) -> bool:
        """Whether this member runs `key`'s check (only asked while it runs checks)."""
        if self._roster is None:
            return True  # no roster: the leader checks everything (scan checked we lead)
        owned = self._owned.get(key)
        if owned is None:
            owned = check_owner(key, self._roster) == self.member.name
            self._owned[key] = owned
        return owned

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
        """Read every instance afresh, and watch the prefix for what changes after."""
        member = self.member
        self._unwatch()
        start = SERVICES_PREFIX.encode()
        # Subscribing and reading happen in one step of the event loop: no change can
        # fall between the range and the first event the watcher gets.
        self._watcher = member.hub.subscribe(
            member.kv, WatchFilter.prefix(start), member.kv.revision + 1
        )
        self._rescan = False
        kvs = member.kv.range(start, prefix_end(start)).kvs
        present = {kv.key for kv in kvs}
        for key in set(self._tracked) - present:
            del self._tracked[key]
        self._decoded = {k: v for k, v in self._decoded.items() if k in present}
        self._owned = {k: v for k, v in self._owned.items() if k in present}
        self._expiring = {k: v for k, v in self._expiring.items() if k in present}
        for kv in kvs:
            self._consider(kv, now, wall)
        member.metrics.checks_owned.set(len(self._tracked))

    def _on_event(self, event: Event, now: float, wall: float) -> None:
        kv = event.kv
        if event.type is EventType.DELETE:
            self._forget(kv.key)
        else:
            self._consider(kv, now, wall)

    def _forget(self, key: bytes) -> None:
        self._tracked.pop(key, None)
        self._decoded.pop(key, None)
        self._owned.pop(key, None)
        self._expiring.pop(key, None)

    def _consider(self, kv: KeyValue, now: float, wall: float) -> None:
        """Bring one instance record's check (and its deregistration) up to date."""
        if parse_instance_key(kv.key.decode("utf-8", "replace")) is None:
            return
        instance = self._decode(kv)
        if instance is None:
            self._forget(kv.key)
            return
        key = kv.key
        if instance.deregister_after is not None:
            self._expiring[key] = kv
        else:
            self._expiring.pop(key, None)
        if instance.deregister_due(wall):
            self._tracked.pop(key, None)
            if key not in self._deleting and self._owns(key):
                self._deregister(kv)
            return
        check = instance.check
        if check is None or not check.is_active or not self._owns(key):
            self._tracked.pop(key, None)
            return
        tracked = self._tracked.get(key)
        if tracked is None or tracked.check != check:
            state = CheckState(instance.health.status)  # counters start empty
            self._tracked[key] = _Tracked(instance, kv, check, state, now, wall)
        else:
            tracked.instance, tracked.kv = instance, kv

    async def _probe(self, key: bytes, tracked: _Tracked) -> None:
        try:
            ok, reason = await self._run_check(tracked.instance, tracked.check)
            tracked.state = observe(
                tracked.state, ok, rise=tracked.check.rise, fall=tracked.check.fall
            )
            tracked.probes += 1
            tracked.last_ok, tracked.last_reason, tracked.last_at = ok, reason, time.time()
            if self._tracked.get(key) is not tracked:
                return  # the instance changed or went, or is no longer ours
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
        if await self._submit(command):
            log.info(
                "%s/%s is %s: %s",
                updated.service, updated.id, updated.health.status.value, reason,
            )  # fmt: skip

    async def _submit(self, command: Txn) -> bool:
        """Apply a guarded txn through the leader; whether it committed and succeeded.

        The leader proposes it; a follower posts it to the leader's `/api/v1/txn` over the
        member's `LeaderLink` (marked forwarded, so a member that is no longer leader
        refuses rather than forwards it again). Any failure is only logged: the next
        probe or scan tries again.
        """
        member = self.member
        if member.is_leader:
            try:
                result = await member.propose(command)
            except (NotLeaderError, Unavailable, KvError) as error:
                log.debug("health write refused: %s", error)
                return False
            return isinstance(result, TxnResult) and result.succeeded
        leader = member.leader
        body = json.dumps(_txn_body(command)).encode()
        try:
            response = await self._link.send("POST", "/api/v1/txn", leader=leader, content=body)
            succeeded = response.status_code == 200 and response.json()["succeeded"] is True
        except (ApiError, ValueError, KeyError, TypeError) as error:
            log.debug("health write through leader %s failed: %s", leader, error)
            return False
        if not succeeded and response.status_code != 200:
            log.debug("health write refused by %s: %s", leader, response.text[:200])
        return succeeded

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
                await self._submit(command)
            finally:
                self._deleting.discard(kv.key)

        task = asyncio.create_task(delete())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)


def _txn_body(command: Txn) -> dict[str, Any]:
    """`command` as the JSON of `POST /api/v1/txn` (only what the checker sends: compares
    on mod_revision, puts and deletes of single keys)."""

    def op(item: object) -> dict[str, Any]:
        if isinstance(item, Put):
            put: dict[str, Any] = {"key": item.key.decode(), "value": item.value.decode()}
            if item.lease:
                put["lease"] = item.lease
            return {"put": put}
        assert isinstance(item, Delete) and item.range_end is None
        return {"delete": {"key": item.key.decode()}}

    compares = []
    for compare in command.compares:
        assert compare.target is CompareTarget.MOD_REVISION and compare.op is CompareOp.EQ
        compares.append(
            {
                "key": compare.key.decode(),
                "target": "mod_revision",
                "op": "=",
                "value": compare.value,
            }
        )
    return {
        "compare": compares,
        "success": [op(item) for item in command.success],
        "failure": [op(item) for item in command.failure],
    }


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


__all__ = ["SCAN_SECONDS", "HealthChecker"]
