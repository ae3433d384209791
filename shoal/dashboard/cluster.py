"""Every member's view of the cluster, sampled, and the changes between samples.

No single member answers "how is each member doing": `/api/v1/cluster` gives one member's
status and the member list with client URLs. `sample_cluster` asks the member the
dashboard is served by for that list, then every listed member for its own status and
`/readyz`, concurrently, each with a short timeout, so one dead member costs one timeout
and never blocks the rest.

`ClusterSampler` runs that once a second, but only while at least one page follows it
(an open `/ui/api/cluster/stream`); every page shares the one sampler of its process.
It pushes a view to the pages only when something in it changed, and turns changes into
events (`cluster_events`: a new leader, a member that became unreachable or came back)
kept in a short ring for pages that open later. The members have no status stream, so
the sampling is the dashboard's; the pages themselves never poll.

Under ACLs every call carries the token of the person whose page asked (`Upstream`), and
a sampler is shared only by pages that follow with the same token: the dashboard never
reads the cluster with one person's rights on behalf of another. Under TLS the calls
speak HTTPS and verify the members against the cluster's CA, presenting the member's
own certificate (a member may demand client certificates).

`cluster_events` is pure (views in, events out) and tested as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

__all__ = [
    "ClusterSampler",
    "ClusterView",
    "MemberView",
    "Upstream",
    "cluster_events",
    "refusal",
    "sample_cluster",
]

SAMPLE_INTERVAL = 1.0  # seconds between samples while a page follows the cluster
MEMBER_TIMEOUT = 1.0  # seconds one member has to answer a sample
RECENT_EVENTS = 100  # cluster events kept for pages that open later
_HEALTH_TEXT = {
    "healthy": "healthy",
    "no_leader": "up but knows no leader",
    "unreachable": "unreachable",
    "unknown": "unknown",
}


@dataclass(frozen=True, slots=True)
class Upstream:
    """How the dashboard reaches the members: the API of the member it is served by, the
    TLS verification of every member (httpx's `verify=`), and the caller's token."""

    member_url: str
    verify: ssl.SSLContext | bool = True
    token: str | None = None

    def client(self) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.AsyncClient(verify=self.verify, headers=headers)

    def as_caller(self, token: str | None) -> Upstream:
        return Upstream(self.member_url, self.verify, token)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberView:
    """One member as it answered (or did not) a sample."""

    name: str
    voter: bool
    client_url: str | None
    peer_addr: str | None
    health: str  # "healthy" (ready), "no_leader" (up, knows no leader), "unreachable", "unknown"
    role: str | None = None
    term: int | None = None
    leader: str | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    revision: int | None = None
    match_index: int | None = None  # as the leader knows it
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """The whole cluster at one sample: `leader` and `term` as the asked member knows them."""

    asked: str  # the member the dashboard is served by
    leader: str | None
    term: int
    members: tuple[MemberView, ...]
    at: float = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "asked": self.asked,
            "leader": self.leader,
            "term": self.term,
            "at": self.at,
            "members": [asdict(m) for m in self.members],
        }


def cluster_events(
    before: ClusterView | None, after: ClusterView, now: float
) -> list[dict[str, Any]]:
    """What changed from `before` to `after`, as events for the overview's list."""
    events: list[dict[str, Any]] = []
    if before is None or before.leader != after.leader:
        if after.leader is not None:
            previous = before.leader if before is not None else None
            text = f"{after.leader} leads (term {after.term})"
            if previous is not None:
                text = f"leader changed from {previous} to {after.leader} (term {after.term})"
            events.append({"kind": "leader", "text": text, "at": now, "member": after.leader})
        elif before is not None:
            events.append(
                {"kind": "leader", "text": "no leader", "at": now, "member": before.leader}
            )
    old = {m.name: m for m in before.members} if before is not None else {}
    for member in after.members:
        was = old.get(member.name)
        if was is None:
            if before is not None:
                events.append(
                    {"kind": "member", "text": f"{member.name} joined", "at": now,
                     "member": member.name}
                )  # fmt: skip
            continue
        if was.health != member.health and "unknown" not in (was.health, member.health):
            events.append(
                {"kind": "member", "text": f"{member.name} is {_HEALTH_TEXT[member.health]}",
                 "at": now, "member": member.name}
            )  # fmt: skip
    gone = set(old) - {m.name for m in after.members}
    for name in sorted(gone):
        events.append({"kind": "member", "text": f"{name} left", "at": now, "member": name})
    return events


def refusal(response: httpx.Response) -> str:
    """An error answer of the API as one line: its status, code and message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return f"{response.status_code} {body['error']}: {body.get('message', '')}"
    return f"HTTP {response.status_code}"


async def _member(http: httpx.AsyncClient, listed: dict[str, Any]) -> MemberView:
    name, url = str(listed["name"]), listed.get("client_url") or None
    base: dict[str, Any] = {
        "name": name,
        "voter": bool(listed.get("voter", True)),
        "client_url": url,
        "peer_addr": listed.get("peer_addr"),
        "match_index": listed.get("match_index"),
    }
    if url is None:
        return MemberView(**base, health="unknown", error="has not advertised its address yet")
    try:
        status, ready = await asyncio.gather(
            http.get(f"{url}/api/v1/cluster", timeout=MEMBER_TIMEOUT),
            http.get(f"{url}/readyz", timeout=MEMBER_TIMEOUT),
        )
        data = status.json()
    except (httpx.HTTPError, ValueError) as error:
        return MemberView(**base, health="unreachable", error=f"{type(error).__name__}: {error}")
    health = "healthy" if ready.status_code == 200 else "no_leader"
    if status.is_error:  # e.g. a token this member has not replicated yet: 401
        return MemberView(**base, health=health, error=refusal(status))
    return MemberView(
        **base,
        health=health,
        role=data.get("role"),
        term=data.get("term"),
        leader=data.get("leader"),
        commit_index=data.get("commit_index"),
        applied_index=data.get("applied_index"),
        revision=data.get("revision"),
    )


async def sample_cluster(http: httpx.AsyncClient, member_url: str) -> ClusterView:
    """One sample (see the module docstring); raises httpx.HTTPError if the member the
    dashboard is served by does not answer."""
    response = await http.get(f"{member_url}/api/v1/cluster", timeout=MEMBER_TIMEOUT * 2)
    if response.is_error:
        raise httpx.HTTPStatusError(refusal(response), request=response.request, response=response)
    own = response.json()
    listed = own.get("members") or []
    members = await asyncio.gather(*(_member(http, m) for m in listed))
    return ClusterView(
        asked=str(own.get("member", "")),
        leader=own.get("leader"),
        term=int(own.get("term") or 0),
        members=tuple(sorted(members, key=lambda m: m.name)),
        at=time.time(),
    )


def _frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class ClusterSampler:
    """Samples while someone follows; fans each change out to every follower's queue."""

    def __init__(self, upstream: Upstream, interval: float = SAMPLE_INTERVAL) -> None:
        self.upstream = upstream
        self.interval = interval
        self.latest: ClusterView | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._followers: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None  # cancelled, maybe still closing

    @contextlib.contextmanager
    def follow(self) -> Iterator[asyncio.Queue[bytes]]:
        """A queue of SSE frames: the latest view and recent events first, then changes."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        if self.latest is not None:
            queue.put_nowait(_frame("view", self.latest.to_json()))
        queue.put_nowait(_frame("events", list(self.recent)))
        self._followers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield queue
        finally:
            self._followers.discard(queue)
            if not self._followers and self._task is not None:
                self._task.cancel()
                self._stopping, self._task = self._task, None

    async def aclose(self) -> None:
        """Wait until sampling has stopped (its connections closed) once nobody follows."""
        for task in (self._task, self._stopping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._stopping = None

    @property
    def followed(self) -> bool:
        return bool(self._followers)

    def _publish(self, frame: bytes) -> None:
        for queue in list(self._followers):
            if queue.full():  # a page that stopped reading: drop its oldest frame
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(frame)

    async def _run(self) -> None:
        async with self.upstream.client() as http:
            while True:
                try:
                    view = await sample_cluster(http, self.upstream.member_url)
                except (httpx.HTTPError, ValueError) as error:
                    self._publish(_frame("unreachable", {"error": str(error), "at": time.time()}))
                else:
                    for event in cluster_events(self.latest, view, view.at):
                        self.recent.append(event)
                        self._publish(_frame("cluster", event))
                    if view != self.latest:
                        self._publish(_frame("view", view.to_json()))
                    self.latest = view
                await asyncio.sleep(self.interval)
