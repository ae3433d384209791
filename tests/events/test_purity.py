"""The pure core of shoal.events stays pure: the delivery state machine, the assignment
of partitions, the model (and the errors they raise) import no I/O, read no clock and
use no global randomness -- checked with tests/test_layers.py's own checkers.

(tests/test_layers.py's PURE_MODULES table is the lead's to extend; until it lists these,
this test keeps them honest.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_layers import check_global_random, check_pure, report

REPO = Path(__file__).resolve().parents[2]
PURE = ("delivery.py", "assignment.py", "model.py", "errors.py")
PARSERS = frozenset({"json", "base64", "binascii"})


@pytest.mark.parametrize("name", PURE)
def test_pure_events_modules(name: str) -> None:
    rel = f"shoal/events/{name}"
    source = (REPO / rel).read_text()
    found = check_pure(source, rel, PARSERS) + check_global_random(source, rel, True)
    assert not found, report(found)


def test_the_check_can_fail() -> None:
    rel = "shoal/events/delivery.py"
    bad = "import time\nimport random\nx = random.random()\n"
    assert len(check_pure(bad, rel, PARSERS)) == 1
    assert check_global_random(bad, rel, True)
