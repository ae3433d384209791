"""The config center's HTTP endpoints, `/api/v1/config/...` (see `shoal.config`).

Writes run on the leader (`Routing.leader_only`): the handler reads the item's records
from the leader's store, has `shoal.config` plan the write, and proposes it as ONE txn
guarded by the mod_revisions it read. If another write slipped in between, the txn
fails and is re-planned against the new state (a few times), so concurrent publishes
get consecutive version numbers; a write that keeps losing gets 409 `conflict`.

Validating content (parsing YAML, TOML, JSON...) can take a second on a large document,
so a publish or a beta parses in a worker thread (`asyncio.to_thread`) while the event
loop keeps serving: the handler reads the item's records on the loop (the store is only
ever touched there), then plans in the thread from those immutable values alone.

Reads are linearizable unless `consistency=stale`. The watch streams, per subscriber,
the content that subscriber should run: it watches the item's key prefix and, on each
batch of changes, resolves the effective content for the subscriber's labels at the
batch's revision, sending it only when it differs from what it last sent. A beta
therefore reaches exactly the subscribers its selector matches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from ..config import (
    Beta,
    ConfigError,
    Conflict,
    ContentTooLarge,
    Effective,
    InvalidContent,
    ItemId,
    Meta,
    NotFound,
    Plan,
    Stored,
    Version,
    VersionMismatch,
    check_labels,
    effective,
    item_of_meta_key,
    namespace_prefix,
    plan_beta,
    plan_delete,
    plan_drop,
    plan_promote,
    plan_publish,
    plan_rollback,
    unified_diff,
)
from ..kv import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    Event,
    KvError,
    Put,
    TxnResult,
    WatchFilter,
    prefix_end,
)
from ..kv import Txn as TxnCommand
from .api_errors import ApiError, kv_error
from .api_models import MAX_ID, STRICT
from .member import Member, NotLeaderError
from .rendering import watch_stream
from .routing import Consistency, Routing

BASE = "/api/v1/config"
WRITE_ATTEMPTS = 4  # re-plans after a lost compare before answering 409
RECORD_CACHE_SIZE = 1024  # decoded meta/beta/version records
FRAME_CACHE_SIZE = 64  # rendered watch frames (one per item, revision and content)

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")
LABEL_PARAM = "labels."


class _Strict(BaseModel):
    model_config = STRICT


class PublishBody(_Strict):
    content: str
    format: str = "text"
    author: str | None = None
    message: str | None = None
    # Compare-and-set: publish only if this is the current version (0: a new item).
    expect_version: int | None = Field(None, ge=0, le=MAX_ID)


class RollbackBody(_Strict):
    version: int = Field(ge=1, le=MAX_ID)
    author: str | None = None
    message: str | None = None


class BetaBody(_Strict):
    content: str
    format: str | None = None
    selector: dict[str, str]
    author: str | None = None
    message: str | None = None


class PromoteBody(_Strict):
    author: str | None = None
    message: str | None = None


def config_error(error: ConfigError) -> ApiError:
    """Translate the config center's errors into the API's status codes."""
    if isinstance(error, InvalidContent):
        return ApiError(
            400,
            "invalid_content",
            error.message,
            format=error.format,
            line=error.line,
            column=error.column,
        )
    if isinstance(error, ContentTooLarge):
        return ApiError(413, "limit_exceeded", error.message, limit=error.limit, size=error.size)
    if isinstance(error, NotFound):
        return ApiError(404, f"{error.what}_not_found", error.message)
    if isinstance(error, VersionMismatch):
        return ApiError(
            409,
            "version_mismatch",
            error.message,
            expected=error.expected,
            current=error.current,
        )
    if isinstance(error, Conflict):
        return ApiError(409, "conflict", error.message)
    return ApiError(400, "invalid_request", error.message)


def _item(namespace: str, name: str) -> ItemId:
    try:
        return ItemId(namespace, name)
    except ConfigError as error:
        raise config_error(error) from error


def labels_of(request: Request) -> dict[str, str]:
    """The caller's labels from ``?labels.zone=eu&labels.canary=true``."""
    raw = {
        key[len(LABEL_PARAM) :]: value
        for key, value in request.query_params.multi_items()
        if key.startswith(LABEL_PARAM)
    }
    try:
        return check_labels(raw)
    except ConfigError as error:
        raise config_error(error) from error


class ConfigStore:
    """Reads of config records from a member's KV store, now or at a past revision.

    Decoded records and rendered watch frames are memoised: a record never changes under
    one mod_revision, and a publish watched by a thousand subscribers would otherwise
    decode (and re-encode) the same content a thousand times on the event loop.
    """

    def __init__(self, member: Member) -> None:
        self.member = member
        self._records: _Lru[tuple[str, int], Any] = _Lru(RECORD_CACHE_SIZE)
        self._frames: _Lru[tuple[str, int, tuple[int, bool, str]], bytes] = _Lru(FRAME_CACHE_SIZE)

    def _get(
        self, key: str, revision: int | None, decode: Callable[[bytes], R]
    ) -> tuple[R, int] | None:
        kv = self.member.kv.get(key.encode(), revision)
        if kv is None:
            return None
        cache_key = (key, kv.mod_revision)
        record = self._records.get(cache_key)
        if record is None:
            record = self._records.put(cache_key, decode(kv.value))
        return record, kv.mod_revision

    def stored(self, item: ItemId, revision: int | None = None) -> Stored:
        meta = self._get(item.meta_key, revision, Meta.from_bytes)
        beta = self._get(item.beta_key, revision, Beta.from_bytes)
        return Stored(
            meta=meta[0] if meta else None,
            meta_revision=meta[1] if meta else 0,
            beta=beta[0] if beta else None,
            beta_revision=beta[1] if beta else 0,
        )

    def version(self, item: ItemId, number: int, revision: int | None = None) -> Version:
        found = self._get(item.version_key(number), revision, Version.from_bytes)
        if found is None:
            raise NotFound("version", f"config item {item} has no version {number}")
        return found[0]

    def frame(self, revision: int, now: Effective) -> bytes:
        """The watch frame delivering ``now`` at ``revision``, encoded once for everyone."""
        cache_key = (str(now.item), revision, now.identity)
        frame = self._frames.get(cache_key)
        if frame is None:
            data = {**now.to_json(), "revision": revision}
            frame = self._frames.put(cache_key, _frame("config", revision, data))
        return frame

    def current(self, item: ItemId, revision: int | None = None) -> tuple[Stored, Version]:
        stored = self.stored(item, revision)
        if stored.meta is None:
            raise NotFound("item", f"no config item {item}")
        return stored, self.version(item, stored.meta.version, revision)

    def resolve(
        self, item: ItemId, labels: Mapping[str, str], revision: int | None = None
    ) -> Effective | None:
        stored = self.stored(item, revision)
        if stored.meta is None:
            return None
        current = self.version(item, stored.meta.version, revision)
        return effective(item, current, stored.beta, labels)

    def history(self, item: ItemId) -> list[Version]:
        start = item.versions_prefix.encode()
        found = self.member.kv.range(start, prefix_end(start))
        return [Version.from_bytes(kv.value) for kv in found.kvs]


class _Lru(Generic[K, V]):
    """A small least-recently-used map (no locking: used from the event loop only)."""

    def __init__(self, size: int) -> None:
        self._size, self._items = size, OrderedDict[K, V]()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


def _txn(plan: Plan) -> TxnCommand:
    compares = tuple(
        Compare(key=key.encode(), target=CompareTarget.MOD_REVISION, op=CompareOp.EQ, value=rev)
        for key, rev in plan.guards
    )
    success = (
        tuple(Put(key=k.encode(), value=v) for k, v in plan.puts)
        + tuple(Delete(key=k.encode()) for k in plan.deletes)
        + tuple(
            Delete(key=p.encode(), range_end=prefix_end(p.encode())) for p in plan.delete_prefixes
        )
    )
    return TxnCommand(compares=compares, success=success)


def _frame(kind: str, revision: int, data: dict[str, Any]) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {revision}\nevent: {kind}\ndata: {body}\n\n".encode()


def router(member: Member, routing: Routing) -> APIRouter:
    api = APIRouter()
    store = ConfigStore(member)
    leader_only, barrier = routing.leader_only, routing.barrier

    async def write(
        request: Request, plan_for: Callable[[], Awaitable[tuple[Plan, dict[str, Any]]]]
    ) -> Any:
        """Plan against the leader's state and commit with guards; re-plan if beaten."""

        async def act() -> Any:
            # A new leader plans only once it has applied what was committed before its
            # term: a plan against older state could refuse (404) or rewrite a change.
            await member.caught_up()
            for _ in range(WRITE_ATTEMPTS):
                if not member.is_leader:
                    raise NotLeaderError(member.leader)
                try:
                    plan, answer = await plan_for()
                    command = _txn(plan)
                except ConfigError as error:
                    raise config_error(error) from error
                except KvError as error:  # an encoded record over the store's limits
                    raise kv_error(error) from error
                result = await member.propose(command)
                assert isinstance(result, TxnResult)
                if result.succeeded:
                    return {**answer, "revision": result.revision}
            raise config_error(Conflict("the item kept changing during the write; retry"))

        return await leader_only(request, act)

    # -- writes -----------------------------------------------------------------------

    @api.put(BASE + "/{namespace}/{name}")
    async def publish(namespace: str, name: str, body: PublishBody, request: Request) -> Any:
        """Publish a new version: `{"version": N, "sha256", "revision"}`."""
        item = _item(namespace, name)

        async def plan() -> tuple[Plan, dict[str, Any]]:
            planned, version = await asyncio.to_thread(
                plan_publish,  # parses the content: off the loop
                item,
                store.stored(item),  # read here, on the loop
                content=body.content,
                fmt=body.format,
                author=body.author,
                message=body.message,
                now=time.time(),
                expect_version=body.expect_version,
            )
            return planned, {"version": version.number, "sha256": version.sha256}

        return await write(request, plan)

    @api.delete(BASE + "/{namespace}/{name}")
    async def delete_item(
        namespace: str,
        name: str,
        request: Request,
        expect_version: int | None = Query(None, ge=0, le=MAX_ID),
    ) -> Any:
        """Remove the item, its history and its beta: `{"deleted": true, "revision"}`."""
        item = _item(namespace, name)

        async def plan() -> tuple[Plan, dict[str, Any]]:
            planned = plan_delete(item, store.stored(item), expect_version=expect_version)
            return planned, {"deleted": True}

        return await write(request, plan)

    @api.post(BASE + "/{namespace}/{name}/rollback")
    async def rollback(namespace: str, name: str, body: RollbackBody, request: Request) -> Any:
        """Publish version `version`'s content again, as a new version."""
        item = _item(namespace, name)

        async def plan() -> tuple[Plan, dict[str, Any]]:
            stored, _ = store.current(item)
            planned, version = plan_rollback(
                item,
                stored,
                store.version(item, body.version),
                author=body.author,
                message=body.message,
                now=time.time(),
            )
            return planned, {"version": version.number, "sha256": version.sha256}

        return await write(request, plan)

    @api.put(BASE + "/{namespace}/{name}/beta")
    async def put_beta(namespace: str, name: str, body: BetaBody, request: Request) -> Any:
        """Start or replace the gray release delivered to instances matching `selector`."""
        item = _item(namespace, name)

        async def plan() -> tuple[Plan, dict[str, Any]]:
            planned, beta = await asyncio.to_thread(
                plan_beta,  # parses the content: off the loop
                item,
                store.stored(item),  # read here, on the loop
                content=body.content,
                fmt=body.format,
                selector=body.selector,
                author=body.author,
                message=body.message,
                now=time.time(),
            )
            return planned, {"beta": beta.summary()}

        return await write(request, plan)

    @api.post(BASE + "/{namespace}/{name}/beta/promote")
    async def promote(
        namespace: str, name: str, request: Request, body: PromoteBody | None = None
    ) -> Any:
        """The beta becomes a new version for everyone."""
        item = _item(namespace, name)
        author, message = (body.author, body.message) if body else (None, None)

        async def plan() -> tuple[Plan, dict[str, Any]]:
            planned, version = plan_promote(
                item, store.stored(item), author=author, message=message, now=time.time()
            )
            return planned, {"version": version.number, "sha256": version.sha256}

        return await write(request, plan)

    @api.delete(BASE + "/{namespace}/{name}/beta")
    async def drop_beta(namespace: str, name: str, request: Request) -> Any:
        """End the gray release without promoting it."""
        item = _item(namespace, name)

        async def plan() -> tuple[Plan, dict[str, Any]]:
            return plan_drop(item, store.stored(item)), {"dropped": True}

        return await write(request, plan)

    # -- reads ------------------------------------------------------------------------

    def read(action: Any) -> Any:
        try:
            return action()
        except ConfigError as error:
            raise config_error(error) from error
        except KvError as error:
            raise kv_error(error) from error

    @api.get(BASE)
    async def list_items(
        namespace: str | None = None, consistency: Consistency = "linearizable"
    ) -> Any:
        """Every item (optionally of one namespace) with its current version."""
        start = read(lambda: namespace_prefix(namespace)).encode()
        await barrier(consistency)
        items = []
        for kv in member.kv.range(start, prefix_end(start)).kvs:
            item = item_of_meta_key(kv.key.decode("utf-8", "replace"))
            if item is None:
                continue
            meta = Meta.from_bytes(kv.value)
            beta = member.kv.get(item.beta_key.encode()) is not None
            items.append(
                {
                    "namespace": item.namespace,
                    "name": item.name,
                    "version": meta.version,
                    "format": meta.format,
                    "updated": meta.updated,
                    "beta": beta,
                }
            )
        return {"items": items, "revision": member.kv.revision}

    @api.get(BASE + "/{namespace}/{name}")
    async def get_item(
        namespace: str,
        name: str,
        request: Request,
        consistency: Consistency = "linearizable",
    ) -> Any:
        """The content this caller should run (the beta's if its labels match)."""
        item, labels = _item(namespace, name), labels_of(request)
        await barrier(consistency)
        found = read(lambda: store.resolve(item, labels))
        if found is None:
            raise config_error(NotFound("item", f"no config item {item}"))
        return {**found.to_json(), "revision": member.kv.revision}

    @api.get(BASE + "/{namespace}/{name}/history")
    async def history(namespace: str, name: str, consistency: Consistency = "linearizable") -> Any:
        """Every version, newest first, without content; and the running beta if any."""
        item = _item(namespace, name)
        await barrier(consistency)
        stored, _ = read(lambda: store.current(item))
        versions = [v.summary() for v in reversed(store.history(item))]
        beta = stored.beta.summary() if stored.beta else None
        return {
            "namespace": namespace,
            "name": name,
            "current": stored.meta.version,
            "versions": versions,
            "beta": beta,
            "revision": member.kv.revision,
        }

    @api.get(BASE + "/{namespace}/{name}/versions/{number}")
    async def get_version(
        namespace: str,
        name: str,
        number: int = Path(ge=1, le=MAX_ID),
        consistency: Consistency = "linearizable",
    ) -> Any:
        item = _item(namespace, name)
        await barrier(consistency)
        version: Version = read(lambda: store.version(item, number))
        return {
            "namespace": namespace,
            "name": name,
            **version.summary(),
            "content": version.content,
        }

    @api.get(BASE + "/{namespace}/{name}/diff")
    async def diff(
        namespace: str,
        name: str,
        from_: int = Query(alias="from", ge=1, le=MAX_ID),
        to: int = Query(ge=1, le=MAX_ID),
        consistency: Consistency = "linearizable",
    ) -> Any:
        """A unified diff from version `from` to version `to`."""
        item = _item(namespace, name)
        await barrier(consistency)
        old = read(lambda: store.version(item, from_))
        new = read(lambda: store.version(item, to))
        return {"from": from_, "to": to, "diff": unified_diff(item, old, new)}

    # -- watch ------------------------------------------------------------------------

    @api.get(BASE + "/{namespace}/{name}/watch")
    async def watch(
        namespace: str,
        name: str,
        request: Request,
        start_revision: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Any:
        """SSE: `config` events carrying the effective content for the caller's labels.

        Without `start_revision` the current content is sent at once, then each change;
        with it, only changes at or after that revision (resume with last id + 1). A
        `deleted` event says the item is gone; `error` that the stream was cut off.
        """
        item, labels = _item(namespace, name), labels_of(request)
        start = start_revision or member.kv.revision + 1
        try:
            baseline = store.resolve(item, labels, start - 1) if start > 1 else None
            watcher = member.hub.subscribe(
                member.kv, WatchFilter.prefix(item.prefix.encode()), start
            )
        except ConfigError as error:
            raise config_error(error) from error
        except KvError as error:
            raise kv_error(error) from error

        def resolve_at(revision: int) -> Effective | None:
            try:
                return store.resolve(item, labels, revision)
            except KvError:  # compacted under us: the present is what matters
                return store.resolve(item, labels)

        last = baseline

        def render(events: list[Event]) -> bytes:
            # One resolution per batch: a subscriber sees the content its labels get now.
            nonlocal last
            revision = events[-1].revision
            now = resolve_at(revision)
            frame = b""
            if now is None and last is not None:
                frame = _frame("deleted", revision, {"namespace": namespace, "name": name})
            elif now is not None and (last is None or now.identity != last.identity):
                frame = store.frame(revision, now)
            last = now
            return frame

        preamble = f": watching {item} from revision {start}\n\n".encode()
        if start_revision is None and baseline is not None:
            preamble += _frame("config", start - 1, baseline.to_json())
        return watch_stream(member.hub, member.metrics, watcher, render, preamble)

    return api
