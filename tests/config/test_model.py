"""Versions, history, rollback, gray release and diff, on an in-memory key space that
applies `Plan`s the way the node's guarded transaction does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.config import (
    Beta,
    ConfigError,
    Conflict,
    InvalidName,
    InvalidSelector,
    ItemId,
    Meta,
    NotFound,
    Plan,
    Stored,
    Version,
    effective,
    item_of_meta_key,
    matches,
    namespace_prefix,
    parse_pairs,
    plan_beta,
    plan_drop,
    plan_promote,
    plan_publish,
    plan_rollback,
    unified_diff,
)

ITEM = ItemId("prod", "articles")


class Space:
    """Keys -> (value, mod_revision); `commit` is the node's txn: all guards or nothing."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    def stored(self, item: ItemId = ITEM) -> Stored:
        meta, beta = self.keys.get(item.meta_key), self.keys.get(item.beta_key)
        return Stored(
            meta=Meta.from_bytes(meta[0]) if meta else None,
            meta_revision=meta[1] if meta else 0,
            beta=Beta.from_bytes(beta[0]) if beta else None,
            beta_revision=beta[1] if beta else 0,
        )

    def commit(self, plan: Plan) -> None:
        for key, rev in plan.guards:
            if self.keys.get(key, (b"", 0))[1] != rev:
                raise Conflict(f"{key} changed")
        self.revision += 1
        for key, value in plan.puts:
            self.keys[key] = (value, self.revision)
        for key in plan.deletes:
            del self.keys[key]

    def version(self, number: int, item: ItemId = ITEM) -> Version:
        return Version.from_bytes(self.keys[item.version_key(number)][0])

    def current(self) -> Version:
        meta = self.stored().meta
        assert meta is not None
        return self.version(meta.version)

    def history(self) -> list[Version]:
        return [Version.from_bytes(v) for k, (v, _) in sorted(self.keys.items()) if "/v/" in k]


def publish(space: Space, content: str, fmt: str = "yaml", now: float = 1.0) -> Version:
    plan, version = plan_publish(
        ITEM, space.stored(), content=content, fmt=fmt, author="ann", message="m", now=now
    )
    space.commit(plan)
    return version


def test_item_addressing_and_key_layout() -> None:
    item = ItemId.parse("prod/articles")
    assert item == ITEM and str(item) == "prod/articles"
    assert item.meta_key == "/config/prod/articles/meta"
    assert item.version_key(7) == "/config/prod/articles/v/0000000007"
    assert item_of_meta_key(item.meta_key) == item
    assert item_of_meta_key(item.version_key(1)) is None
    assert namespace_prefix("prod") == "/config/prod/"
    for bad in ("prod", "prod/", "/articles", "prod/a/b", "pr od/x", "prod/../x"):
        with pytest.raises(InvalidName):
            ItemId.parse(bad)


def test_versions_count_up_and_keep_their_metadata() -> None:
    space = Space()
    first = publish(space, "a: 1\n", now=100.0)
    second = publish(space, "a: 2\n", now=200.0)
    assert (first.number, second.number) == (1, 2)
    assert second.time == 200.0 and second.author == "ann" and second.format == "yaml"
    assert len(second.sha256) == 64 and first.sha256 != second.sha256
    assert [v.number for v in space.history()] == [1, 2]
    assert space.current() == second
    summary = second.summary()
    assert "content" not in summary and summary["size"] == 5


def test_two_publishes_planned_on_the_same_state_cannot_both_commit() -> None:
    space = Space()
    publish(space, "a: 1\n")
    seen = space.stored()
    plan_a, a = plan_publish(ITEM, seen, content="a", fmt="text", author=None, message=None, now=1)
    plan_b, b = plan_publish(ITEM, seen, content="b", fmt="text", author=None, message=None, now=1)
    assert a.number == b.number == 2
    space.commit(plan_a)
    with pytest.raises(Conflict):
        space.commit(plan_b)
    assert space.current().content == "a"


def test_invalid_content_plans_nothing() -> None:
    with pytest.raises(ConfigError, match="line 1"):
        plan_publish(ITEM, Stored(), content="[", fmt="json", author=None, message=None, now=1)


def test_rollback_is_a_new_version_with_the_old_content() -> None:
    space = Space()
    one = publish(space, "a: 1\n")
    publish(space, '{"a": 2}', "json")
    plan, back = plan_rollback(ITEM, space.stored(), one, author="bob", message=None, now=3)
    space.commit(plan)
    assert back.number == 3 and back.kind == "rollback" and back.source == 1
    assert (back.content, back.format, back.sha256) == (one.content, "yaml", one.sha256)
    assert back.message == "rollback to version 1"
    with pytest.raises(NotFound):
        plan_rollback(ItemId("prod", "none"), Stored(), one, author=None, message=None, now=1)


def test_beta_promote_and_drop() -> None:
    space = Space()
    publish(space, "x: 1\n")
    with pytest.raises(InvalidSelector):
        plan_beta(ITEM, space.stored(), content="x: 2\n", fmt=None, selector={},
                  author=None, message=None, now=2)  # fmt: skip
    plan, beta = plan_beta(ITEM, space.stored(), content="x: 2\n", fmt=None,
                           selector={"zone": "eu"}, author="c", message=None, now=2)  # fmt: skip
    space.commit(plan)
    assert beta.base == 1 and beta.format == "yaml"
    stored = space.stored()
    assert stored.beta == beta and stored.meta is not None and stored.meta.version == 1

    on = effective(ITEM, space.current(), stored.beta, {"zone": "eu", "host": "h1"})
    off = effective(ITEM, space.current(), stored.beta, {"zone": "us"})
    assert (on.beta, on.content, on.version) == (True, "x: 2\n", 1)
    assert (off.beta, off.content) == (False, "x: 1\n")

    plan, promoted = plan_promote(ITEM, space.stored(), author=None, message=None, now=3)
    space.commit(plan)
    assert promoted.number == 2 and promoted.kind == "promote" and promoted.author == "c"
    assert space.stored().beta is None and space.current().content == "x: 2\n"
    with pytest.raises(NotFound):
        plan_drop(ITEM, space.stored())

    plan, _ = plan_beta(ITEM, space.stored(), content="x: 3\n", fmt="yaml",
                        selector={"canary": "true"}, author=None, message=None, now=4)  # fmt: skip
    space.commit(plan)
    space.commit(plan_drop(ITEM, space.stored()))
    assert space.stored().beta is None and space.current().number == 2


def test_selector_matching() -> None:
    selector = {"zone": "eu", "canary": "true"}
    assert matches(selector, {"zone": "eu", "canary": "true", "host": "a"})
    assert not matches(selector, {"zone": "eu"})
    assert not matches(selector, {"zone": "eu", "canary": "false"})
    assert not matches({}, {"zone": "eu"})
    assert parse_pairs(["zone=eu", "canary = true"]) == selector
    with pytest.raises(InvalidSelector):
        parse_pairs(["zone"])
    with pytest.raises(InvalidSelector):
        parse_pairs(["bad key=1"])


@given(
    st.dictionaries(st.sampled_from("abcd"), st.sampled_from("xy"), min_size=1),
    st.dictionaries(st.sampled_from("abcde"), st.sampled_from("xyz")),
)
def test_selector_matches_exactly_when_it_is_a_subset(
    selector: dict[str, str], labels: dict[str, str]
) -> None:
    assert matches(selector, labels) == (selector.items() <= labels.items())


def test_unified_diff() -> None:
    space = Space()
    old = publish(space, "a: 1\nb: 2\nc: 3\n")
    new = publish(space, "a: 1\nb: 20\nc: 3")
    text = unified_diff(ITEM, old, new)
    assert text.startswith("--- prod/articles@1\n+++ prod/articles@2\n")
    assert "-b: 2\n" in text and "+b: 20\n" in text
    assert "\\ No newline at end of file" in text
    assert unified_diff(ITEM, old, old) == ""
