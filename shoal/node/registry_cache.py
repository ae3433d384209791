"""Decoded registry records and rendered discovery answers, reused while nothing changed.

Why: discovery of a 100-instance service decoded and validated 100 JSON records on
every request, and rendered the answer again, although the records change far less
often than they are read. Here each prefix's records are decoded once per change and the
answer bytes of a query are rendered once per change.

How a change is noticed, without hooks into the apply path: a prefix's *fingerprint* is
(number of live keys, highest mod_revision among them). Revisions only grow, so a put
under the prefix raises the highest mod_revision, and if every change since was a delete
the count went down: two different contents never share a fingerprint. Computing it
costs one range over the prefix (no decoding), which the answer needs anyway. Records
that did not change between two fingerprints (same key and mod_revision) are not decoded
again.

Never: mutate the store, or serve an answer rendered for other content than the store
holds now (the fingerprint is taken on every call; the store revision in an answer is
the caller's, read at the same moment).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..kv import KeyValue, KeyValueStore, prefix_end
from ..registry import (
    Instance,
    InstanceFilter,
    RegistryError,
    ServiceSettings,
    ServiceSummary,
    discover,
    instances_prefix,
    parse_instance_key,
    settings_key,
    summarize,
)
from .rendering import json_bytes

MAX_PREFIXES = 256  # services whose decoded records are kept (least recently used go)
MAX_ANSWERS = 16  # rendered answers kept per service (distinct query + threshold)


def instance_json(instance: Instance, kv: KeyValue | None = None) -> dict[str, Any]:
    out = instance.to_json()
    if kv is not None:
        out["lease"] = kv.lease or None
        out["mod_revision"] = kv.mod_revision
    return out


@dataclass(frozen=True, slots=True)
class Record:
    """One instance key's decoded value, as of its mod_revision."""

    kv: KeyValue
    instance: Instance
    json: dict[str, Any]  # instance_json(instance, kv); never mutated


@dataclass(slots=True)
class _Prefix:
    fingerprint: tuple[int, int]
    records: list[Record]
    by_key: dict[bytes, Record | None]  # None: a record this version cannot read
    answers: dict[tuple[InstanceFilter, float], bytes] = field(default_factory=dict)


class RegistryCache:
    """Per instance prefix: decoded records and rendered discovery answers."""

    def __init__(self) -> None:
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()

    def records(self, kv: KeyValueStore, prefix: str) -> list[Record]:
        """The readable instances under `prefix` now, by key (unreadable ones skipped)."""
        return self._current(kv, prefix).records

    def discovery(
        self, kv: KeyValueStore, service: str, query: InstanceFilter, revision: int
    ) -> bytes:
        """The JSON body of `GET /api/v1/services/{service}/instances` for `query`,
        reporting `revision` (the store revision the caller read at)."""
        entry = self._current(kv, instances_prefix(service))
        threshold = settings(kv, service).protect_threshold
        tail = entry.answers.get((query, threshold))
        if tail is None:
            result = discover((r.instance for r in entry.records), query, threshold)
            chosen = {id(i) for i in result.instances}
            body = json_bytes(
                {
                    "protected": result.protected,
                    "protect_threshold": threshold,
                    "total": result.total,
                    "healthy": result.healthy,
                    "instances": [r.json for r in entry.records if id(r.instance) in chosen],
                }
            )
            tail = body[1:]  # without "{": the service and revision go first
            if len(entry.answers) >= MAX_ANSWERS:
                entry.answers.clear()
            entry.answers[(query, threshold)] = tail
        head = json_bytes({"service": service, "revision": revision})
        return head[:-1] + b"," + tail

    def summaries(self, kv: KeyValueStore, prefix: str) -> list[ServiceSummary]:
        return summarize(r.instance for r in self.records(kv, prefix))

    def _current(self, kv: KeyValueStore, prefix: str) -> _Prefix:
        raw = prefix.encode()
        kvs = kv.range(raw, prefix_end(raw)).kvs
        fingerprint = (len(kvs), max((k.mod_revision for k in kvs), default=0))
        entry = self._prefixes.get(prefix)
        if entry is not None and entry.fingerprint == fingerprint:
            self._prefixes.move_to_end(prefix)
            return entry
        old = entry.by_key if entry is not None else {}
        by_key: dict[bytes, Record | None] = {}
        records = []
        for item in kvs:
            record = old.get(item.key)
            if record is None or record.kv.mod_revision != item.mod_revision:
                record = _decode(item)
            by_key[item.key] = record
            if record is not None:
                records.append(record)
        entry = _Prefix(fingerprint, records, by_key)
        self._prefixes[prefix] = entry
        self._prefixes.move_to_end(prefix)
        while len(self._prefixes) > MAX_PREFIXES:
            self._prefixes.popitem(last=False)
        return entry


def _decode(kv: KeyValue) -> Record | None:
    if parse_instance_key(kv.key.decode("utf-8", "replace")) is None:
        return None
    try:
        instance = Instance.decode(kv.value)
    except RegistryError:
        return None  # a record this version cannot read: skipped
    return Record(kv, instance, instance_json(instance, kv))


def settings(kv: KeyValueStore, service: str) -> ServiceSettings:
    """A service's settings; defaults if none are stored (or they cannot be read)."""
    found = kv.get(settings_key(service).encode())
    if found is None:
        return ServiceSettings()
    try:
        return ServiceSettings.from_json(json.loads(found.value))
    except (RegistryError, ValueError):
        return ServiceSettings()


__all__ = ["MAX_ANSWERS", "MAX_PREFIXES", "Record", "RegistryCache", "instance_json", "json_bytes"]
