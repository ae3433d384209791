"""The registry's one error: input that breaks a rule of the instance model.

`RegistryError` is a `ValueError` whose `field` names where the problem is (for example
``check.interval`` or ``metadata.env``), so the HTTP layer can answer a 400 that says
what is wrong and where. It is always the caller's fault, never ours.
"""

from __future__ import annotations


class RegistryError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
