"""The discovery cache answers exactly what decoding every record on every request did,
and decodes a record again only when it changed."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from shoal.kv import Compact, Delete, KeyValueStore, Put, prefix_end
from shoal.node.registry_cache import RegistryCache, instance_json, json_bytes, settings
from shoal.registry import (
    SERVICES_PREFIX,
    Instance,
    InstanceFilter,
    RegistryError,
    ServiceSettings,
    discover,
    instance_key,
    instances_prefix,
    parse_filter,
    parse_instance_key,
    registration,
    settings_key,
    summarize,
)

QUERIES = [
    parse_filter([]),
    parse_filter([("healthy", "true")]),
    parse_filter([("zone", "eu")]),
    parse_filter([("healthy", "true"), ("tag", "v2")]),
    parse_filter([("meta.env", "prod"), ("healthy", "1")]),
]


def reference(kv: KeyValueStore, service: str, query: InstanceFilter, revision: int) -> bytes:
    """The answer as the handler computed it before the cache (decode everything)."""
    raw = instances_prefix(service).encode()
    found = []
    for item in kv.range(raw, prefix_end(raw)).kvs:
        if parse_instance_key(item.key.decode()) is None:
            continue
        try:
            found.append((Instance.decode(item.value), item))
        except RegistryError:
            continue
    kvs = {i.id: item for i, item in found}
    threshold = settings(kv, service).protect_threshold
    result = discover((i for i, _ in found), query, threshold)
    return json_bytes(
        {
            "service": service,
            "revision": revision,
            "protected": result.protected,
            "protect_threshold": threshold,
            "total": result.total,
            "healthy": result.healthy,
            "instances": [instance_json(i, kvs[i.id]) for i in result.instances],
        }
    )


def put_instance(kv: KeyValueStore, service: str, iid: str, **body: Any) -> None:
    fields = {"address": "10.0.0.1", "port": 80, **body}
    instance = registration(service, iid, fields, now=1000.0)
    kv.apply(Put(key=instance_key(service, iid).encode(), value=instance.encode()), 0.0)


def random_body(rng: random.Random) -> dict[str, Any]:
    return {
        "zone": rng.choice(["eu", "us", ""]),
        "tags": rng.sample(["v1", "v2", "canary"], rng.randint(0, 2)),
        "metadata": {"env": rng.choice(["prod", "dev"])},
        "status": rng.choice(["passing", "warning", "critical"]),
        "port": rng.randint(1, 65535),
    }


@pytest.mark.parametrize("seed", range(8))
def test_cached_answers_equal_decoding_everything_after_every_change(seed: int) -> None:
    rng = random.Random(seed)
    kv, cache = KeyValueStore(), RegistryCache()
    services = ["shop", "cart"]
    for step in range(300):
        service = rng.choice(services)
        parsed = [
            parse_instance_key(item.key.decode())
            for item in kv.range(*_prefix(instances_prefix(service))).kvs
        ]
        ids = [p[1] for p in parsed if p is not None]
        op = rng.random()
        if op < 0.45 or not ids:
            put_instance(kv, service, f"i{rng.randint(0, 30)}", **random_body(rng))
        elif op < 0.65:
            kv.apply(Delete(key=instance_key(service, rng.choice(ids)).encode()), 0.0)
        elif op < 0.75:  # same count, other content: delete one, add another
            kv.apply(Delete(key=instance_key(service, rng.choice(ids)).encode()), 0.0)
            put_instance(kv, service, f"n{step}", **random_body(rng))
        elif op < 0.85:
            value = ServiceSettings(protect_threshold=rng.choice([0.0, 0.5, 0.9])).encode()
            kv.apply(Put(key=settings_key(service).encode(), value=value), 0.0)
        elif op < 0.9:  # a record this version cannot read: skipped by both
            key = instance_key(service, f"bad{rng.randint(0, 3)}").encode()
            kv.apply(Put(key=key, value=b"{not json"), 0.0)
        elif op < 0.95:
            kv.apply(Put(key=f"{instances_prefix(service)}x/y".encode(), value=b"{}"), 0.0)
        elif kv.revision - 1 > kv.compacted_revision:
            kv.apply(Compact(revision=kv.revision - 1), 0.0)
        for query in rng.sample(QUERIES, 2):
            for name in services:
                got = cache.discovery(kv, name, query, kv.revision)
                assert got == reference(kv, name, query, kv.revision), (seed, step, name)
        everything = [r.instance for r in cache.records(kv, SERVICES_PREFIX)]
        assert cache.summaries(kv, SERVICES_PREFIX) == summarize(everything)
        assert len(everything) == sum(
            len(cache.records(kv, instances_prefix(name))) for name in services
        )


def _prefix(prefix: str) -> tuple[bytes, bytes]:
    raw = prefix.encode()
    return raw, prefix_end(raw)


def test_an_unchanged_service_is_not_decoded_again_and_a_change_decodes_only_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kv, cache = KeyValueStore(), RegistryCache()
    for i in range(100):
        put_instance(kv, "disc", f"i{i}")
    decoded: list[bytes] = []
    original = Instance.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Instance], value: bytes) -> Instance:
        decoded.append(value)
        result: Instance = original(cls, value)
        return result

    monkeypatch.setattr(Instance, "decode", classmethod(counting))
    healthy = parse_filter([("healthy", "true")])
    first = cache.discovery(kv, "disc", healthy, kv.revision)
    assert len(decoded) == 100
    put_instance(kv, "other", "o1")  # another service: the store revision moves on
    again = cache.discovery(kv, "disc", healthy, kv.revision)
    assert len(decoded) == 100  # nothing of "disc" changed
    assert json.loads(again)["revision"] == json.loads(first)["revision"] + 1
    assert again.replace(b'"revision":%d' % kv.revision, b"") == first.replace(
        b'"revision":%d' % (kv.revision - 1), b""
    )
    put_instance(kv, "disc", "i7", status="critical")
    changed = json.loads(cache.discovery(kv, "disc", healthy, kv.revision))
    assert len(decoded) == 101  # i7 alone
    assert changed["healthy"] == 99 and "i7" not in [i["id"] for i in changed["instances"]]
