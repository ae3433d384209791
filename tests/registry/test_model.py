"""The instance model, key layout, filters and the protect threshold."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.registry import (
    Health,
    HealthStatus,
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

NOW = 1_700_000_000.0


def make(i: str, status: str = "passing", **body: Any) -> Instance:
    inst = registration("web", i, {"address": "10.0.0.1", "port": 8080, **body}, now=NOW)
    return inst.with_health(HealthStatus(status), "test", NOW + 1)


def test_key_layout_round_trips() -> None:
    key = instance_key("web", "a-1")
    assert key == "/registry/services/web/instances/a-1"
    assert key.startswith(instances_prefix("web"))
    assert parse_instance_key(key) == ("web", "a-1")
    assert parse_instance_key(settings_key("web")) is None
    assert parse_instance_key("/registry/services/web/instances/a/b") is None
    assert not instance_key("web2", "a").startswith(instances_prefix("web"))


@pytest.mark.parametrize(
    ("service", "instance_id"), [("we/b", "a"), ("web", ""), ("-web", "a"), ("web", "a b")]
)
def test_names_are_restricted(service: str, instance_id: str) -> None:
    with pytest.raises(RegistryError):
        instance_key(service, instance_id)


def test_registration_round_trips_through_json() -> None:
    inst = registration(
        "web",
        "a",
        {
            "address": "10.0.0.1",
            "port": 8080,
            "weight": 3,
            "zone": "eu-1",
            "tags": ["v2", "canary"],
            "metadata": {"env": "prod"},
            "version": "1.2.3",
            "check": {"type": "http", "path": "/healthz", "interval": "1s"},
            "deregister_after": "1m",
        },
        now=NOW,
    )
    assert inst.health == Health(status=HealthStatus.PASSING, reason="registered", since=NOW)
    assert inst.deregister_after == 60.0 and inst.weight == 3.0
    assert Instance.decode(inst.encode()) == inst


def test_reregistration_keeps_time_and_health() -> None:
    first = make("a", "critical")
    again = registration(
        "web", "a", {"address": "10.0.0.2", "port": 1}, now=NOW + 50, previous=first
    )
    assert again.registered_at == NOW and again.health == first.health
    forced = registration(
        "web", "a", {"address": "h", "port": 1, "status": "passing"}, now=NOW + 60, previous=first
    )
    assert forced.health.status is HealthStatus.PASSING and forced.health.since == NOW + 60


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"port": 1}, "address"),
        ({"address": "h"}, "port"),
        ({"address": "h", "port": 0}, "port"),
        ({"address": "h", "port": 70000}, "port"),
        ({"address": "a b", "port": 1}, "address"),
        ({"address": "h", "port": 1, "weight": -1}, "weight"),
        ({"address": "h", "port": 1, "tags": [""]}, "tags[0]"),
        ({"address": "h", "port": 1, "metadata": {"a/b": "x"}}, "metadata.a/b"),
        ({"address": "h", "port": 1, "status": "sick"}, "status"),
        ({"address": "h", "port": 1, "deregister_after": "soon"}, "deregister_after"),
        ({"address": "h", "port": 1, "check": {"type": "ttl"}}, "check.ttl"),
    ],
)
def test_bad_registrations_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RegistryError) as info:
        registration("web", "a", body, now=NOW)
    assert info.value.field == field


def test_health_since_moves_only_on_change() -> None:
    inst = make("a")
    same = inst.with_health(HealthStatus.PASSING, "HTTP 200", NOW + 9)
    assert same.health.since == inst.health.since and same.health.reason == "HTTP 200"
    down = inst.with_health(HealthStatus.CRITICAL, "refused", NOW + 9)
    assert down.health.since == NOW + 9


def test_deregister_after() -> None:
    inst = make("a", "critical", deregister_after="30s")
    since = inst.health.since
    assert not inst.deregister_due(since + 29.9)
    assert inst.deregister_due(since + 30)
    assert not make("b", "passing", deregister_after="30s").deregister_due(since + 999)
    assert not make("c", "critical").deregister_due(since + 999)


def test_parse_filter() -> None:
    query = parse_filter(
        [
            ("healthy", "true"),
            ("tag", "v2"),
            ("tag", "canary"),
            ("zone", "eu"),
            ("meta.env", "prod"),
        ]
    )
    assert query == InstanceFilter(
        healthy=True, tags=("v2", "canary"), zone="eu", meta=(("env", "prod"),)
    )
    for bad in ([("healthy", "maybe")], [("colour", "red")], [("meta.", "x")]):
        with pytest.raises(RegistryError):
            parse_filter(bad)


def test_filters_select() -> None:
    instances = [
        make("a", tags=["v2"], zone="eu", metadata={"env": "prod"}),
        make("b", tags=["v2", "canary"], zone="us", metadata={"env": "prod"}),
        make("c", "critical", tags=["v2"], zone="eu", metadata={"env": "dev"}),
        make("d", "warning", zone="eu"),
    ]

    def ids(**kw: Any) -> list[str]:
        return [i.id for i in discover(instances, InstanceFilter(**kw)).instances]

    assert ids() == ["a", "b", "c", "d"]
    assert ids(healthy=True) == ["a", "b", "d"]  # warning still serves
    assert ids(tags=("v2",)) == ["a", "b", "c"]
    assert ids(tags=("v2", "canary")) == ["b"]
    assert ids(zone="eu", healthy=True) == ["a", "d"]
    assert ids(meta=(("env", "prod"),)) == ["a", "b"]


def test_protect_threshold() -> None:
    instances = [make("a"), make("b", "critical"), make("c", "critical"), make("d", "critical")]
    healthy = InstanceFilter(healthy=True)
    off = discover(instances, healthy, 0.0)
    assert [i.id for i in off.instances] == ["a"] and not off.protected
    below = discover(instances, healthy, 0.5)  # 1/4 healthy < 0.5: return everything
    assert len(below.instances) == 4 and below.protected
    assert (below.total, below.healthy) == (4, 1)
    at = discover(instances, healthy, 0.25)  # 1/4 is not below 0.25
    assert [i.id for i in at.instances] == ["a"] and not at.protected
    unfiltered = discover(instances, InstanceFilter(), 0.9)
    assert len(unfiltered.instances) == 4 and not unfiltered.protected
    empty = discover([], healthy, 0.9)
    assert empty.instances == () and not empty.protected
    all_down = discover(instances[1:], healthy, 0.1)
    assert len(all_down.instances) == 3 and all_down.protected


def test_settings_validate() -> None:
    assert ServiceSettings.from_json({"protect_threshold": 0.5}).protect_threshold == 0.5
    for bad in ({"protect_threshold": 2}, {"protect_threshold": "x"}, {"other": 1}):
        with pytest.raises(RegistryError):
            ServiceSettings.from_json(bad)


def test_summarize() -> None:
    other = registration("api", "x", {"address": "h", "port": 1}, now=NOW)
    got = summarize([make("a"), make("b", "critical"), other])
    assert [(s.name, s.instances, s.healthy) for s in got] == [("api", 1, 1), ("web", 2, 1)]
