"""The `shoal` command's surface: help, version, validation and the sim passthrough."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoal import __version__
from shoal.cli.main import app, main
from shoal.cli.server import resolve_settings

runner = CliRunner()

FLAGS_NONE: dict[str, object] = {}


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"shoal {__version__}"
    assert main(["--version"]) == 0


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ([], ["server", "sim", "kv", "lease", "cluster"]),
        (["kv"], ["put", "get", "list", "del", "watch"]),
        (["lease"], ["grant", "keepalive", "revoke", "ttl"]),
        (["cluster"], ["status", "add", "promote", "remove", "transfer"]),
    ],
)
def test_group_help_lists_commands(group: list[str], commands: list[str]) -> None:
    result = runner.invoke(app, [*group, "--help"])
    assert result.exit_code == 0, result.output
    for command in commands:
        assert command in result.stdout


@pytest.mark.parametrize(
    "command",
    [["kv", "put"], ["kv", "watch"], ["lease", "grant"], ["cluster", "status"], ["kv", "list"]],
)
def test_every_client_command_takes_endpoints_and_json(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--endpoints" in result.stdout and "--json" in result.stdout


def test_server_help() -> None:
    result = runner.invoke(app, ["server", "--help"])
    assert result.exit_code == 0
    for flag in ("--initial-cluster", "--join", "--config", "--tick-ms", "--election-ticks"):
        assert flag in result.stdout


def test_sim_passthrough() -> None:
    assert main(["sim", "--seed", "1", "--members", "3"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-addr", "nohost"], "not host:port"),
        (["--peer-addr", "h:70000"], "not host:port"),
        (["--peer-addr", "n/:7"], "not host:port"),
        (["--initial-cluster", "a=h\u00e9:1"], "not host:port"),
        (["--header-timeout", "0"], "--header-timeout"),
        (["--max-connections", "0"], "--max-connections"),
        (["--force-new-cluster", "--join", "http://127.0.0.1:1"], "--force-new-cluster"),
        (["--name", "bad name"], "member name"),
        (["--name", "x", "--initial-cluster", "a=h:1"], "not in it"),
        (["--initial-cluster", "a"], "name=host:port"),
        (["--tick-ms", "0"], "--tick-ms"),
        (["--config", "/nonexistent/shoal.toml"], "cannot read"),
    ],
)
def test_server_flag_validation(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["server", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()).replace("│", "")


def test_settings_from_flags_file_and_defaults(tmp_path: Path) -> None:
    defaults = resolve_settings({}, None)
    assert defaults.name == "default" and defaults.client_addr == ("127.0.0.1", 7700)
    assert defaults.initial_cluster == {"default": ("127.0.0.1", 7701)}
    config = tmp_path / "shoal.toml"
    config.write_text(
        'name = "n2"\ndata_dir = "d"\ntick_ms = 20\n'
        '[initial_cluster]\nn1 = "127.0.0.1:7712"\nn2 = "127.0.0.1:7722"\n'
    )
    settings = resolve_settings({"tick_ms": 30, "name": None}, config)
    assert settings.name == "n2" and settings.tick_ms == 30  # the flag wins over the file
    assert settings.peer_addr == ("127.0.0.1", 7722)  # taken from the initial cluster
    assert settings.data_dir == Path("d")
    config.write_text('nmae = "typo"\n')
    result = runner.invoke(app, ["server", "--config", str(config)])
    # The error box wraps long lines (the path's length decides where): unwrap it.
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "unknown key(s) nmae" in flat, result.output


def test_bad_endpoints_and_unreachable_server() -> None:
    result = runner.invoke(app, ["kv", "get", "a", "--endpoints", "ftp://x"])
    assert result.exit_code == 2 and "--endpoints" in result.output
    result = runner.invoke(app, ["lease", "grant", "0"])
    assert result.exit_code == 2


def test_unreachable_server_is_a_red_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_ENDPOINTS", "http://127.0.0.1:1")
    result = runner.invoke(app, ["cluster", "add", "n2", "127.0.0.1:7702"])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.output
