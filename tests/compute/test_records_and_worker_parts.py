"""The pure parts of the shoal executor: resource parsing, frames, record batching."""

from __future__ import annotations

import json

import pytest

from shoal.compute import _frames as fr
from shoal.compute import records
from shoal.compute.worker import parse_resources


def test_parse_resources() -> None:
    assert parse_resources("cpu=2, memory=4e9,gpu=1") == {"cpu": 2.0, "memory": 4e9, "gpu": 1.0}
    assert parse_resources("") == {}
    for bad, message in [
        ("cpu", "expected NAME=AMOUNT"),
        ("=2", "expected NAME=AMOUNT"),
        ("cpu=x", "'x' is not a number"),
        ("cpu=-1", "must be a finite number >= 0"),
        ("cpu=inf", "must be a finite number >= 0"),
        ("cpu=nan", "must be a finite number >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_resources(bad)


def test_frames_round_trip() -> None:
    data = fr.frame(fr.RUN, 3, 2**32 + 5, b"payload")
    size, kind, slot, gen = fr.HEADER.unpack_from(data)
    assert (size, kind, slot, gen) == (7, fr.RUN, 3, 5)
    assert data[fr.HEADER.size :] == b"payload"


def test_small_results_are_checkpointed_and_big_ones_are_not() -> None:
    assert records.encode_result(None) is not None
    assert records.encode_result(b"x" * (records.MAX_CHECKPOINT_RESULT + 1)) is None
    assert records.encode_result(lambda: 1) is None  # cannot be pickled: not kept


def test_orphaned_is_shown_for_a_running_job_whose_driver_is_gone() -> None:
    assert records.display_state({"state": "running", "driver_alive": False}) == "orphaned"
    assert records.display_state({"state": "running", "driver_alive": True}) == "running"
    assert records.display_state({"state": "done", "driver_alive": False}) == "done"


def test_batches_respect_the_txn_limits() -> None:
    chunk: dict[str, str | None] = {str(i): "A" * 1000 for i in range(2000)}
    parts = list(records._split(chunk))
    assert len(parts) > 1 and sum(len(p) for p in parts) == 2000
    ops = [records._put(f"/k/{i}", part) for i, part in enumerate(parts)]
    ops += [records._put(f"/s/{i}", {"n": i}) for i in range(300)]
    batches = list(records._batches(ops))
    assert sum(len(b) for b in batches) == len(ops)
    for batch in batches:
        assert len(batch) <= records._MAX_TXN_OPS
        assert len(json.dumps(batch)) <= records._MAX_TXN_BYTES + 1000
