"""The fast path's reading of a registration body agrees with the FastAPI handler's
(pydantic `InstanceBody`): whatever it accepts, pydantic accepts and turns into the same
instance (or registration refuses it, and the handler words the error); everything else
is left to the handler (None), never an exception."""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import ValidationError

from shoal.node.api_registry import InstanceBody, register_fields
from shoal.registry import RegistryError, registration

VALUES: list[Any] = [
    None, True, 0, 1, -1, 2**70, 1.5, float("nan"), "", "x", "10s", "soon", "passing",
    "critical", [], ["a"], [1], {}, {"a": "b"}, {"a": 1}, {"k.x": "v"}, {"bad key": "v"},
    {"type": "ttl", "ttl": "1s"}, {"type": "http"}, {"type": "tcp", "interval": "1s"},
    {"type": "ttl"}, {"type": "ttl", "ttl": 5}, {"type": "http", "rise": "x"},
]  # fmt: skip
FIELDS = [*InstanceBody.model_fields, "colour"]


def _instance(fields: dict[str, Any]) -> Any:
    try:
        return registration("svc", "i1", fields, now=1000.0).encode()
    except RegistryError as error:
        return ("error", error.field)


def test_what_the_fast_path_accepts_pydantic_accepts_and_means_the_same() -> None:
    rng = random.Random(7)
    accepted = 0
    for _ in range(20_000):
        names = rng.sample(FIELDS, rng.randint(0, len(FIELDS)))
        body = {name: rng.choice(VALUES) for name in names}
        if rng.random() < 0.6:
            body.update(address="10.0.0.1", port=rng.choice([1, 80, 0, "80"]))
        raw = json.dumps(body).encode()
        fields = register_fields(json.loads(raw))  # the front hands it the parsed body
        if fields is None:
            continue
        accepted += 1
        try:  # as FastAPI does: json.loads, then the model
            model = InstanceBody.model_validate(json.loads(raw))
        except ValidationError:
            # Only a missing address may get past the fast path's reading; registration
            # then refuses it, and the fast path hands the request to the handler.
            refused = _instance(fields)
            assert "address" not in body and isinstance(refused, tuple), body
            continue
        assert _instance(fields) == _instance(model.model_dump(exclude_unset=True)), body
    assert accepted > 1000  # the generator does reach the fast path


def test_bodies_that_are_not_plainly_well_formed_are_left_to_the_handler() -> None:
    for data in [None, [1], "x", {"address": "h", "port": "80"}, {"address": "h", "port": True}]:
        assert register_fields(data) is None, data
