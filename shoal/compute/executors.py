"""The executor registry: executor names (``"local"``, ``"shoal"``, ``"dask"``, ``"ray"``)
mapped to the factories that make them.

``Job.run(executor="...")`` and the ``shoal job run --executor`` command resolve names
here. Each factory imports its executor's module only when called, so importing this
module (or ``job``, the value type, which does not import this one at all) never imports
an executor, nor Dask or Ray behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import JobError
from .job import Executor

__all__ = ["executor_by_name", "known_executors"]


def _local(**options: Any) -> Executor:
    from .local import LocalExecutor

    return LocalExecutor(**options)


def _shoal(**options: Any) -> Executor:
    from .shoal_executor import ShoalExecutor

    return ShoalExecutor(**options)


def _dask(**options: Any) -> Executor:
    from .dask_executor import DaskExecutor

    return DaskExecutor(**options)


def _ray(**options: Any) -> Executor:
    from .ray_executor import RayExecutor

    return RayExecutor(**options)


_FACTORIES: dict[str, Callable[..., Executor]] = {
    "local": _local,
    "shoal": _shoal,
    "dask": _dask,
    "ray": _ray,
}


def known_executors() -> tuple[str, ...]:
    """The executor names ``executor_by_name`` accepts, sorted."""
    return tuple(sorted(_FACTORIES))


def executor_by_name(name: str, **options: Any) -> Executor:
    """Make the executor called ``name`` with ``options`` (its constructor's keywords)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        known = ", ".join(known_executors())
        raise JobError(f"unknown executor {name!r}; known executors: {known}")
    return factory(**options)
