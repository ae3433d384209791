"""shoal.observe.logs: one setup, readable or JSON lines, the trace id in every line.

Unit tests drive the formatters through a real root logger writing to a buffer; the
process tests start a real `shoal server` and read what it writes to stderr.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.observe import TraceContext, setup_logging, use_trace
from shoal.observe.logs import ENV_FORMAT, JsonFormatter, TextFormatter
from shoal.testing import ServerProcess, free_port, wait_for


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    """The root logger as the test found it, restored afterwards. Tests call `bare()`
    first: pytest adds its capture handlers after fixtures run."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        root.handlers = handlers
        root.setLevel(level)


def bare() -> None:
    logging.getLogger().handlers = []


def test_json_lines_carry_the_current_trace_and_extra_fields(clean_root: logging.Logger) -> None:
    bare()
    out = io.StringIO()
    setup_logging("server", log_format="json", stream=out)
    context = TraceContext.new("req-42")
    log = logging.getLogger("shoal.test")
    with use_trace(context):
        log.warning("inside %s", "a request", extra={"route": "/users"})
    log.info("outside")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "inside a request"
    assert first["level"] == "warning" and first["logger"] == "shoal.test"
    assert first["trace_id"] == context.trace_id and first["span_id"] == context.span_id
    assert first["request_id"] == "req-42" and first["route"] == "/users"
    assert first["process"] == "server" and isinstance(first["pid"], int)
    assert first["ts"].endswith("Z")
    assert second["trace_id"] is None and second["message"] == "outside"


def test_text_lines_are_readable_and_name_the_trace(clean_root: logging.Logger) -> None:
    bare()
    out = io.StringIO()
    setup_logging("worker", stream=out)
    context = TraceContext.new()
    with use_trace(context):
        logging.getLogger("shoal.x").error("boom")
    logging.getLogger("shoal.x").info("idle")
    inside, outside = out.getvalue().splitlines()
    assert f"ERROR   shoal.x [worker trace={context.trace_id}] boom" in inside
    assert "[worker trace=-] idle" in outside


def test_exceptions_and_unencodable_extras_never_break_a_line(clean_root: logging.Logger) -> None:
    bare()
    out = io.StringIO()
    setup_logging("server", log_format="json", stream=out)
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("shoal.x").exception("failed", extra={"thing": object()})
    line = json.loads(out.getvalue())
    assert "ValueError: bad value" in line["exc"]
    assert line["thing"].startswith("<object object")


def test_setup_twice_keeps_one_handler(clean_root: logging.Logger) -> None:
    bare()
    out = io.StringIO()
    setup_logging("svc", stream=out)
    setup_logging("svc", log_format="json", stream=out)
    assert len(clean_root.handlers) == 1
    assert isinstance(clean_root.handlers[0].formatter, JsonFormatter)


def test_an_apps_own_logging_is_kept_and_gains_the_trace_id(clean_root: logging.Logger) -> None:
    bare()
    out = io.StringIO()
    own = logging.StreamHandler(out)
    own.setFormatter(logging.Formatter("%(trace_id)s|%(message)s"))
    clean_root.addHandler(own)
    assert setup_logging("users", respect_existing=True) is None
    assert clean_root.handlers == [own]
    context = TraceContext.new()
    with use_trace(context):
        logging.getLogger("app").warning("hello")
    assert out.getvalue().strip() == f"{context.trace_id}|hello"


def test_without_handlers_a_service_gets_shoals_format(clean_root: logging.Logger) -> None:
    bare()
    handler = setup_logging("users", respect_existing=True)
    assert handler is not None and isinstance(handler.formatter, TextFormatter)


def test_a_bad_format_names_the_choices(
    clean_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare()
    with pytest.raises(ValueError, match=r"--log-format: 'xml' is not a log format; use one of"):
        setup_logging("server", log_format="xml")
    monkeypatch.setenv(ENV_FORMAT, "yaml")
    with pytest.raises(ValueError, match=ENV_FORMAT):
        setup_logging("server")
    monkeypatch.setenv(ENV_FORMAT, "JSON")
    handler = setup_logging("server")
    assert handler is not None and isinstance(handler.formatter, JsonFormatter)


def test_shoal_server_logs_json_lines_with_log_format_json(tmp_path: Path) -> None:
    proc = ServerProcess("n1", tmp_path / "n1" / "data", extra=["--log-format", "json"]).start()
    try:
        proc.wait_ready()
        # Something the member logs at INFO: a checked instance turning critical (nothing
        # listens on its port).
        port = free_port()
        body = {"address": "127.0.0.1", "port": port,
                "check": {"type": "tcp", "interval": "200ms", "fall": 1}}  # fmt: skip
        assert proc.request("PUT", "/api/v1/services/s/instances/i1", json=body).is_success
        wait_for(
            lambda: any("is critical" in str(r["message"]) for r in _json_lines(proc.log())),
            30, 0.1, "the health line",
        )  # fmt: skip
        lines = _json_lines(proc.log())
        assert all({"ts", "level", "logger", "message", "trace_id"} <= set(r) for r in lines)
        assert all(r["process"] == "server" for r in lines)
        assert any(r["logger"] == "shoal.health" and r["level"] == "info" for r in lines)
    finally:
        proc.kill()


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_bad_log_format_stops_shoal_server_with_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shoal.cli.main", "server", "--data-dir", str(tmp_path / "d"),
         "--log-format", "xml"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "--log-format" in done.stderr and "use one of text, json" in done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything started
