"""Config binding: a service's settings from the config center, reloaded on change.

    @svc.on_config("articles")                 # callback(value) on every new content
    def reconfigure(value: dict) -> None: ...

    settings = svc.settings("articles", ArticleSettings)   # a typed, live object
    settings.value.page_size                   # always the latest valid content

`LiveSettings` parses each new content into the model (a pydantic model, a dataclass, or
any callable taking the parsed mapping). Content that does not fit is refused and the
previous value kept, with the error logged and kept in `error`: a bad publish must not
take a running service down. Until the first content arrives, `value` is the model's
defaults when it has them (or None); `wait` blocks until a content has arrived.

Callbacks run on the agent's thread (see agent.py): keep them quick, and hand anything
long to your own executor.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..client import ConfigUpdate

__all__ = ["LiveSettings"]

log = logging.getLogger("shoal.service")

T = TypeVar("T")


def _build(model: Any, value: Any) -> Any:
    validate = getattr(model, "model_validate", None)  # pydantic v2
    if validate is not None:
        return validate(value)
    if dataclasses.is_dataclass(model) and isinstance(model, type):
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping for {model.__name__}, got {type(value).__name__}")
        return model(**value)
    return model(value)


def _defaults(model: Any) -> Any:
    try:
        return model()
    except Exception:  # no defaults: None until the first content
        return None


class LiveSettings(Generic[T]):
    """The latest valid content of one config item, as a `model` instance."""

    def __init__(self, item: str, model: Callable[..., T]) -> None:
        self.item, self.model = item, model
        self.value: T | None = _defaults(model)
        self.version = 0  # 0: nothing arrived yet
        self.update: ConfigUpdate | None = None
        self.error: Exception | None = None
        self._arrived = threading.Event()
        self._listeners: list[Callable[[T], object]] = []

    def wait(self, timeout: float = 10.0) -> T:
        if not self._arrived.wait(timeout):
            raise TimeoutError(f"no content of {self.item} within {timeout} s")
        assert self.value is not None
        return self.value

    def on_change(self, listener: Callable[[T], object]) -> Callable[[T], object]:
        """Also call `listener(value)` after each accepted content (usable as a decorator)."""
        self._listeners.append(listener)
        return listener

    def accept(self, update: ConfigUpdate) -> None:
        if update.deleted:
            log.warning("config item %s was deleted; keeping version %d", self.item, self.version)
            return
        try:
            value = _build(self.model, update.value)
        except Exception as error:
            self.error = error
            log.error("config %s version %d refused: %s", self.item, update.version, error)
            return
        self.value, self.version, self.update, self.error = value, update.version, update, None
        self._arrived.set()
        for listener in self._listeners:
            try:
                listener(value)
            except Exception:
                log.exception("listener of config %s raised", self.item)
