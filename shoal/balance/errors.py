"""The balance package's one error: a host, pool or option that breaks a rule.

`BalanceError` is a `ValueError` whose `field` names what is wrong (``weight``,
``hosts[3].id``, ``option choice_count``), so a layer above (the SDK, the gateway's config
loader) can answer with a 4xx that says what to fix. It is always the caller's fault:
a bug of ours is an assertion, never a `BalanceError`.
"""

from __future__ import annotations


class BalanceError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
