"""`shoal job run|show|cancel` and `shoal jobs`: compute jobs from the command line.

`run`: the job is looked up by import (the current directory is on the import path, so
``examples.compute.sum:job`` works from the repository). A live progress bar goes to
stderr; the result goes to stdout -- with ``--json``, exactly one JSON object
``{"result": ..., "report": {...}}`` and nothing else. ``--executor shoal --server URL``
runs it on the ``shoal worker`` processes registered there, and records it in the
control plane, where `shoal jobs`, `shoal job show ID` and `shoal job cancel ID` find it
from anywhere; ``--resume ID`` continues a recorded job without rerunning its finished
tasks.

To mount `shoal jobs` (in main.py): ``app.command("jobs")(job.jobs)``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import DEFAULT_ENDPOINTS, Endpoints, Json, control_plane, err, fail, out, print_json

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
        str, typer.Option("--executor", "-e", help="Where to run it: local, shoal, dask, ray.")
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help=(
                "local/dask: worker processes (default: CPUs); ray: CPUs of a local "
                "instance; shoal: workers to wait for."
            ),
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="SHOAL_ENDPOINTS",
            help="shoal executor: control-plane URL(s) (env SHOAL_ENDPOINTS).",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="shoal executor: continue this recorded job id."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Run the job MODULE:ATTR and print its result."""
    from shoal.compute import ComputeError

    job = load_job(target)
    options: dict[str, Any] = {}
    if executor == "shoal":
        options["server"] = server or DEFAULT_ENDPOINTS
        if workers is not None:
            options["min_workers"] = workers
        if resume is not None:
            options["resume"] = resume
    else:
        if resume is not None:
            raise fail("--resume needs --executor shoal (only it records jobs)")
        if workers is not None:
            options["workers"] = workers
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


# --- records in the control plane ------------------------------------------------------------


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 129600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _progress(record: dict[str, Any]) -> str:
    counts = record.get("counts", {})
    total = record.get("tasks", 0)
    return f"{counts.get('done', 0)}/{total}"


def jobs(endpoints: Endpoints = DEFAULT_ENDPOINTS, as_json: Json = False) -> None:
    """List the jobs recorded in the control plane (newest first)."""
    from shoal.compute.records import display_state, list_jobs

    with control_plane(endpoints) as plane:
        found = list_jobs(plane)
    if as_json:
        print_json({"jobs": found})
        return
    if not found:
        out.print("no jobs recorded")
        return
    now = time.time()
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "NAME", "STATE", "PROGRESS", "AGE"):
        table.add_column(column)
    for record in found:
        table.add_row(
            escape(str(record.get("id", ""))),
            escape(str(record.get("name", ""))),
            display_state(record),
            _progress(record),
            _age(now - float(record.get("submitted_at", now))),
        )
    out.print(table)


@app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id (see shoal jobs).")],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    as_json: Json = False,
) -> None:
    """Show one recorded job."""
    from shoal.compute.records import display_state, read_job

    with control_plane(endpoints) as plane:
        record = read_job(plane, job_id)
    if record is None:
        raise fail(f"no job {job_id!r} is recorded")
    if as_json:
        print_json(record)
        return
    table = Table(show_header=False, box=None)
    now = time.time()
    record = {**record, "state": display_state(record)}
    for name in ("id", "name", "state", "executor", "priority"):
        table.add_row(name, escape(str(record.get(name, ""))))
    table.add_row("progress", _progress(record))
    counts = record.get("counts", {})
    table.add_row("tasks", escape(", ".join(f"{k} {v}" for k, v in counts.items())))
    table.add_row("age", _age(now - float(record.get("submitted_at", now))))
    if record.get("finished_at"):
        took = float(record["finished_at"]) - float(record.get("submitted_at", 0))
        table.add_row("took", f"{took:.3f}s")
    driver = record.get("driver", {})
    table.add_row("driver", escape(f"{driver.get('host', '?')} pid {driver.get('pid', '?')}"))
    table.add_row("workers", escape(", ".join(record.get("workers", [])) or "-"))
    out.print(table)
    if record.get("error"):
        out.print(escape(str(record["error"])))


@app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id (see shoal jobs).")],
    endpoints: Endpoints = DEFAULT_ENDPOINTS,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for the driver to stop it.")
    ] = 10.0,
    as_json: Json = False,
) -> None:
    """Ask the driver of a running job to cancel it, and wait until it has."""
    from shoal.compute.records import TERMINAL, read_job, request_cancel

    with control_plane(endpoints) as plane:
        record = read_job(plane, job_id)
        if record is None:
            raise fail(f"no job {job_id!r} is recorded")
        if record.get("state") in TERMINAL:
            raise fail(f"job {job_id!r} has already ended: {record.get('state')}")
        request_cancel(plane, job_id, "shoal job cancel")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            record = read_job(plane, job_id) or record
            if record.get("state") in TERMINAL or record.get("state") == "interrupted":
                break
            time.sleep(0.05)
    state = record.get("state")
    if as_json:
        print_json({"id": job_id, "state": state})
    elif state == "cancelled":
        out.print(f"job {escape(job_id)} cancelled")
    else:
        out.print(
            f"cancel of job {escape(job_id)} requested; it is still {state} "
            "(its driver may be gone: resume it with --resume, or leave it)"
        )
