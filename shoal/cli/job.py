"""`shoal job run MODULE:ATTR`: run a compute job from the command line.

The job is looked up by import (the current directory is on the import path, so
``examples.compute.sum:job`` works from the repository). A live progress bar goes to
stderr; the result goes to stdout -- with ``--json``, exactly one JSON object
``{"result": ..., "report": {...}}`` and nothing else.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import Json, err, fail, out

app = typer.Typer(help="Run distributed compute jobs.", no_args_is_help=True)


def load_job(target: str) -> Any:
    """The ``Job`` named by ``module:attr`` (an attribute, or a function returning one)."""
    from shoal.compute import Job

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter("expected MODULE:ATTR, e.g. examples.compute.sum:job")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise fail(f"cannot import {module_name!r}: {error}") from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise fail(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(value, Job) and callable(value):
        value = value()
    if not isinstance(value, Job):
        raise fail(f"{target} is not a shoal.compute.Job (got {type(value).__name__})")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


@app.command("run")
def run(
    target: Annotated[str, typer.Argument(metavar="MODULE:ATTR", help="Where the Job lives.")],
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="Where to run it (local).")
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: CPUs)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Run the job MODULE:ATTR and print its result."""
    from shoal.compute import ComputeError

    job = load_job(target)
    options: dict[str, Any] = {} if workers is None else {"workers": workers}
    try:
        if as_json:
            result = job.run(executor, **options)
        else:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task(escape(job.name), total=None)

                def progress(job_id: str, done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = job.run(executor, progress=progress, **options)
    except ComputeError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; every worker process was stopped") from None
    report = result.report
    if as_json:
        document = {"result": _jsonable(result.result), "report": report.to_dict()}
        typer.echo(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
        return
    out.print(escape(repr(result.result)) if not isinstance(result.result, str) else result.result)
    table = Table(show_header=False, box=None)
    table.add_row("job", escape(report.job_id))
    table.add_row("executor", report.executor)
    table.add_row("tasks", str(len(report.tasks)))
    table.add_row("retries", str(report.retries))
    table.add_row("speculative copies", str(report.speculative_copies))
    table.add_row("workers", str(len(report.workers)))
    table.add_row("wall time", f"{report.wall_time:.3f}s")
    err.print(table)
