"""Construction-time checks shared by the configs: one clear ValueError per bad field.

Every message names the owner and the field, the allowed range and what was given, e.g.
``BreakerConfig.failure_rate must be in (0, 1], got 1.5``. Booleans are refused where a
number is expected (``True`` is an ``int`` to Python, never a sensible window size), and
NaN is refused everywhere (it compares false with every bound and would slip through).
"""

from __future__ import annotations

import math


def _range_text(minimum: float, maximum: float | None, min_open: bool, max_open: bool) -> str:
    low = f"{'(' if min_open else '['}{_num(minimum)}"
    high = "inf)" if maximum is None else f"{_num(maximum)}{')' if max_open else ']'}"
    return f"{low}, {high}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def require_int(
    owner: str, name: str, value: object, *, minimum: int, maximum: int | None = None
) -> None:
    """``value`` is an int (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = _range_text(minimum, maximum, False, False)
        raise ValueError(f"{owner}.{name} must be in {allowed}, got {value!r}")


def require_number(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: float,
    maximum: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
) -> None:
    """``value`` is a finite real number in the given range (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
    number = float(value)
    below = number <= minimum if min_open else number < minimum
    above = maximum is not None and (number >= maximum if max_open else number > maximum)
    if not math.isfinite(number) or below or above:
        allowed = _range_text(minimum, maximum, min_open, max_open)
        raise ValueError(f"{owner}.{name} must be in {allowed}, got {value!r}")
