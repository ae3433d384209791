"""Keep the layering of DESIGN.md true without anyone having to remember it.

Three checks run over every ``.py`` file under ``shoal/``, parsed with ``ast`` (nothing
is imported, so a broken module cannot hide a violation):

1. Import direction: a layer imports only the shoal layers that DESIGN.md's table allows.
   The layer of a file is the first package under ``shoal/`` (``shoal/raft/log.py`` is
   ``raft``); files directly in ``shoal/`` are the ``root`` facade.
2. Purity: the pure layers import, outside shoal, only side-effect-free stdlib modules
   from an allowlist -- no I/O, no clock, no threads, no global state -- and call no I/O
   builtin (``open``, ``print``, ``input``, ...). So do the pure modules of layers that are
   pure only in part (the job scheduler, the client's protocol core, the registry and
   config models: ``PURE_MODULES``), each with the few parsers it needs (``json``,
   ``yaml``, ...), and every shoal module that a pure module imports.
3. Determinism: the pure code never touches the global ``random`` generator; an RNG is
   passed in as a ``random.Random``.

The checkers are plain functions over source text, so the self-tests at the bottom can
prove that each one is able to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHOAL = REPO / "shoal"

ROOT_LAYER = "root"

# DESIGN.md, "Layers and who may import whom". None means "may import anything".
# A layer may always import itself. A new package must be added here (and to DESIGN.md's
# table) before it passes -- that is deliberate.
ALLOWED: dict[str, frozenset[str] | None] = {
    ROOT_LAYER: None,  # the public facade re-exports from every layer
    "wire": frozenset(),
    "raft": frozenset(),
    "kv": frozenset({"wire"}),
    "node": frozenset({"wire", "raft", "kv", "registry", "config", "security"}),
    # TLS contexts, ACL policies and the ASGI guard the member wraps its API in.
    "security": frozenset({"wire", "kv", "registry", "config"}),
    "registry": frozenset({"wire"}),
    "config": frozenset({"wire"}),
    "client": frozenset({"wire", "registry", "config"}),
    "balance": frozenset(),
    "resilience": frozenset(),
    # The registry and config models are the vocabulary shared by server and clients
    # (DESIGN.md's own row for them); the SDK and the gateway read them directly.
    # ... and `@svc.on_event` / `svc.publish` are the service-facing side of events.
    "service": frozenset(
        {"client", "balance", "resilience", "observe", "registry", "config", "events"}
    ),
    # DESIGN.md: the gateway is "the same client inside a proxy" -- it reuses the SDK's
    # upstream pools and client policies rather than a second copy of them.
    "gateway": frozenset(
        {"client", "balance", "resilience", "observe", "registry", "config", "service"}
    ),
    "events": frozenset({"client"}),
    "compute": frozenset({"client"}),
    "observe": frozenset(),
    "testing": None,
    "cli": None,
    "dashboard": None,
}

PURE_LAYERS = frozenset({"raft", "wire", "kv", "balance", "resilience"})

# Stdlib modules a pure layer may import: none of them does I/O, reads a clock or holds
# process-wide state. (``random`` is here for ``random.Random``; check 3 polices the rest.)
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "collections.abc",
        "contextlib",
        "copy",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "math",
        "operator",
        "random",
        "re",
        "statistics",
        "struct",
        "typing",
        "zlib",
    }
)


@dataclass(frozen=True, slots=True)
class PureModules:
    """Modules that must be pure although their layer as a whole is not.

    ``paths`` are globs over repo-relative paths; at least one must match a file (a list
    of alternatives lets a module be renamed on one branch while another still has the old
    name). ``parsers`` are the extra modules these may import: each parses or formats a
    value handed to it and touches no file, socket or clock.
    """

    paths: tuple[str, ...]
    parsers: frozenset[str] = frozenset()
    why: str = ""


PURE_MODULES: tuple[PureModules, ...] = (
    PureModules(
        ("shoal/compute/scheduler.py",),
        why="the scheduler decides (handle(event) -> instructions); executors act",
    ),
    PureModules(
        ("shoal/compute/messages.py", "shoal/compute/events.py"),
        why="the scheduler's events and instructions",
    ),
    PureModules(
        ("shoal/client/protocol.py",),
        frozenset({"json", "urllib.parse"}),
        why="the one request/response core under the sync and async clients",
    ),
    PureModules(
        ("shoal/registry/*.py",),
        frozenset({"json"}),
        why="the registry's model, shared by server and clients",
    ),
    PureModules(
        ("shoal/security/policy.py", "shoal/security/routes.py"),
        frozenset({"json", "urllib.parse"}),
        why="ACL policies and the (method, path) -> permission table",
    ),
    PureModules(
        ("shoal/config/*.py",),
        frozenset({"json", "tomllib", "yaml", "difflib"}),
        why="the config center's model: formats, versions, diffs, selectors",
    ),
    PureModules(
        ("shoal/node/duties.py", "shoal/node/reconfig.py"),
        why="the leader's duties and membership checks, decided apart from the member's I/O",
    ),
)

# Builtins that do I/O (or import around the allowlist); pure code never calls them.
IO_BUILTINS = frozenset({"open", "print", "input", "breakpoint", "__import__"})

# Named explicitly so the failure message says why, not just "not allowed".
FORBIDDEN_IN_PURE = frozenset(
    {
        "os",
        "sys",
        "time",
        "datetime",
        "socket",
        "asyncio",
        "threading",
        "multiprocessing",
        "subprocess",
        "io",
        "pathlib",
        "logging",
        "secrets",
        "uuid",
        "select",
        "selectors",
        "signal",
        "tempfile",
        "shutil",
        "urllib",
        "http",
    }
)


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    statement: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}  -- {self.reason}"


@dataclass(frozen=True, slots=True)
class ModuleFile:
    """One file under shoal/: where it is, its dotted name and its layer."""

    rel: str  # path relative to the repo, for messages
    name: str  # dotted module name, e.g. "shoal.raft.log"
    is_package: bool  # an __init__.py
    layer: str

    @property
    def package(self) -> str:
        """The package that relative imports in this file are resolved against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def is_entry_point(self) -> bool:
        # Command-line entry points parse argv, print, read the wall clock for progress
        # and may fan runs out to processes; that is the I/O shell around a pure core, so
        # they are exempt from the purity check (not from the direction check).
        filename = self.rel.rsplit("/", 1)[-1]
        if filename == "__main__.py":
            return True
        return self.rel.startswith("shoal/raft/sim/") and filename == "demo.py"


def module_file(rel: str) -> ModuleFile:
    """Describe the file at ``rel`` (a repo-relative path such as "shoal/raft/log.py")."""
    parts = rel.removesuffix(".py").split("/")
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    layer = ROOT_LAYER if len(rel.split("/")) == 2 else parts[1]
    return ModuleFile(rel=rel, name=".".join(parts), is_package=is_package, layer=layer)


def layer_of_module(dotted: str) -> str | None:
    """The shoal layer that ``dotted`` belongs to, or None if it is not shoal's."""
    parts = dotted.split(".")
    if parts[0] != "shoal":
        return None
    if len(parts) == 1:
        return ROOT_LAYER
    if parts[1] in ALLOWED or (SHOAL / parts[1]).is_dir():
        return parts[1]
    return ROOT_LAYER  # a module or attribute of the facade, e.g. shoal.__version__


def resolve_from(node: ast.ImportFrom, mod: ModuleFile) -> str:
    """The absolute module named by a (possibly relative) ``from ... import``."""
    if node.level == 0:
        assert node.module is not None
        return node.module
    parts = mod.package.split(".")
    up = node.level - 1
    if up >= len(parts):
        raise ValueError(f"{mod.rel}:{node.lineno}: relative import beyond top-level package")
    base = ".".join(parts[: len(parts) - up])
    return f"{base}.{node.module}" if node.module else base


@dataclass(frozen=True, slots=True)
class ImportRef:
    line: int
    statement: str
    module: str  # absolute dotted name of what is imported
    internal: bool  # a shoal module (absolute or relative)


def imports_of(tree: ast.Module, mod: ModuleFile) -> Iterator[ImportRef]:
    """Every import in the file, at any depth (including under ``if TYPE_CHECKING:``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportRef(
                    node.lineno,
                    ast.unparse(node),
                    alias.name,
                    alias.name.split(".")[0] == "shoal",
                )
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(node, mod)
            internal = node.level > 0 or base.split(".")[0] == "shoal"
            if base == "shoal":
                # `from shoal import raft` names a layer; `from shoal import x` the facade.
                for alias in node.names:
                    yield ImportRef(node.lineno, ast.unparse(node), f"shoal.{alias.name}", True)
            else:
                yield ImportRef(node.lineno, ast.unparse(node), base, internal)


def check_direction(source: str, rel: str) -> list[Violation]:
    mod = module_file(rel)
    tree = ast.parse(source, filename=rel)
    if mod.layer not in ALLOWED:
        return [Violation(rel, 1, "(file)", f"layer {mod.layer!r} is not in DESIGN.md's table")]
    allowed = ALLOWED[mod.layer]
    if allowed is None:
        return []
    found = []
    for ref in imports_of(tree, mod):
        if not ref.internal:
            continue
        target = layer_of_module(ref.module)
        if target is None or target == mod.layer or target in allowed:
            continue
        reason = f"layer {mod.layer!r} may not import layer {target!r} ({ref.module})"
        found.append(Violation(rel, ref.line, ref.statement, reason))
    return found


def purity_rule(rel: str) -> frozenset[str] | None:
    """What the file at ``rel`` may import beyond PURE_STDLIB if it must be pure, else None.

    Pure layers get nothing extra; a PURE_MODULES entry gets its parsers. Modules that are
    pure only because a pure module imports them are found by ``pure_files``.
    """
    if module_file(rel).layer in PURE_LAYERS:
        return frozenset()
    for group in PURE_MODULES:
        if any(fnmatchcase(rel, pattern) for pattern in group.paths):
            return group.parsers
    return None


def _describe(mod: ModuleFile) -> str:
    if mod.layer in PURE_LAYERS:
        return f"pure layer {mod.layer!r}"
    return f"pure module {mod.name}"


def check_purity(source: str, rel: str) -> list[Violation]:
    """Check one file by its own rule (``purity_rule``)."""
    parsers = purity_rule(rel)
    return [] if parsers is None else check_pure(source, rel, parsers)


def check_pure(source: str, rel: str, parsers: frozenset[str]) -> list[Violation]:
    """Imports outside PURE_STDLIB + ``parsers``, and calls of I/O builtins, in a file that
    must be pure (entry points excepted)."""
    mod = module_file(rel)
    if mod.is_entry_point:
        return []
    tree = ast.parse(source, filename=rel)
    found = []
    what = _describe(mod)
    for ref in imports_of(tree, mod):
        if ref.internal or ref.module in PURE_STDLIB or ref.module in parsers:
            continue
        top = ref.module.split(".")[0]
        if top in FORBIDDEN_IN_PURE:
            reason = f"{what} must not import {top!r} (I/O, clock or globals)"
        else:
            reason = f"{ref.module!r} is not in the allowlist of {what}"
        found.append(Violation(rel, ref.line, ref.statement, reason))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in IO_BUILTINS
        ):
            reason = f"{what} must not call {node.func.id}() (I/O belongs in the shell)"
            found.append(Violation(rel, node.lineno, ast.unparse(node.func), reason))
    return found


def module_paths(dotted: str) -> tuple[str, str]:
    """The two files that could hold module ``dotted``: ``a/b.py`` or ``a/b/__init__.py``."""
    base = dotted.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


def pure_files(sources: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Every file of ``sources`` (rel -> text) that must be pure, with its parsers.

    The roots are the pure layers and PURE_MODULES; then every shoal module a pure module
    imports must be pure too, with the importer's parsers (a pure scheduler that imports
    its event types is pure only if they are, whatever the module holding them is called).
    """
    pure: dict[str, frozenset[str]] = {}
    todo: list[str] = []
    for rel in sources:
        rule = purity_rule(rel)
        if rule is not None:
            pure[rel] = rule
            todo.append(rel)
    while todo:
        rel = todo.pop()
        mod = module_file(rel)
        if mod.is_entry_point:
            continue
        tree = ast.parse(sources[rel], filename=rel)
        targets: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.level > 0 or (node.module or "").startswith("shoal")
            ):
                base = resolve_from(node, mod)
                targets.append(base)
                targets.extend(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.extend(a.name for a in node.names if a.name.split(".")[0] == "shoal")
        for dotted in targets:
            for path in module_paths(dotted):
                if path in sources and path not in pure:
                    pure[path] = pure[rel]
                    todo.append(path)
    return pure


def check_global_random(source: str, rel: str, must_be_pure: bool | None = None) -> list[Violation]:
    """Uses of the global random generator in pure code (by ``purity_rule`` unless
    ``must_be_pure`` says)."""
    if must_be_pure is None:
        must_be_pure = purity_rule(rel) is not None
    # Entry points are not exempt here: a seed must replay the same run, demo included.
    if not must_be_pure:
        return []
    tree = ast.parse(source, filename=rel)
    aliases: set[str] = set()  # names bound to the random module in this file
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == "random")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "random":
            for alias in node.names:
                if alias.name != "Random":
                    reason = f"global randomness: random.{alias.name}; pass a random.Random in"
                    found.append(Violation(rel, node.lineno, ast.unparse(node), reason))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr != "Random"
        ):
            reason = f"global randomness: random.{node.attr}; pass a random.Random in"
            found.append(Violation(rel, node.lineno, ast.unparse(node), reason))
    return found


def shoal_files() -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for p in SHOAL.rglob("*.py"))


def shoal_sources() -> dict[str, str]:
    return {rel: (REPO / rel).read_text(encoding="utf-8") for rel in shoal_files()}


def run_check(check: str) -> list[Violation]:
    sources = shoal_sources()
    pure = pure_files(sources)
    found: list[Violation] = []
    for rel, source in sources.items():
        if check == "direction":
            found.extend(check_direction(source, rel))
        elif check == "purity":
            if rel in pure:
                found.extend(check_pure(source, rel, pure[rel]))
        elif check == "global_random":
            found.extend(check_global_random(source, rel, rel in pure))
        else:
            raise ValueError(f"unknown check {check!r}")
    return found


def report(found: list[Violation]) -> str:
    text = "\n".join(str(v) for v in found)
    print(text)  # shown with the failure, one offending import per line
    return text


def test_there_are_files_to_check() -> None:
    assert "shoal/cli/main.py" in shoal_files()


def test_import_direction_follows_design() -> None:
    found = run_check("direction")
    assert not found, report(found)


def test_pure_layers_import_only_side_effect_free_stdlib() -> None:
    found = run_check("purity")
    assert not found, report(found)


def test_pure_layers_use_no_global_randomness() -> None:
    found = run_check("global_random")
    assert not found, report(found)


def test_every_pure_module_group_names_a_file() -> None:
    files = shoal_files()
    for group in PURE_MODULES:
        matched = [rel for rel in files if any(fnmatchcase(rel, p) for p in group.paths)]
        assert matched, f"no file matches {group.paths} ({group.why}): renamed? update the list"


def test_pure_modules_and_what_they_import_are_checked() -> None:
    pure = pure_files(shoal_sources())
    for rel in [
        "shoal/compute/scheduler.py",
        "shoal/compute/errors.py",  # imported by the scheduler
        "shoal/client/protocol.py",
        "shoal/client/sse.py",  # imported by the protocol core
        "shoal/registry/instance.py",
        "shoal/config/formats.py",
        "shoal/raft/rawnode.py",
        "shoal/node/duties.py",
        "shoal/node/reconfig.py",
    ]:
        assert rel in pure, rel
    assert pure["shoal/config/formats.py"] >= {"yaml", "tomllib"}
    assert pure["shoal/client/sse.py"] == pure["shoal/client/protocol.py"]
    for rel in ["shoal/client/http.py", "shoal/compute/local.py", "shoal/node/member.py"]:
        assert rel not in pure, rel


# --- the checkers can fail -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "rel"),
    [
        ("import time\n", "shoal/compute/scheduler.py"),
        ("import json\n", "shoal/compute/scheduler.py"),  # the scheduler parses nothing
        ("from time import monotonic\n", "shoal/compute/events.py"),
        ("import httpx\n", "shoal/client/protocol.py"),
        ("import socket\n", "shoal/registry/checks.py"),
        ("import yaml\n", "shoal/registry/instance.py"),  # yaml is the config model's
        ("from pathlib import Path\n", "shoal/config/model.py"),
        ("import urllib.request\n", "shoal/config/formats.py"),
        ("import time\n", "shoal/node/duties.py"),  # the leader's duties take `now`
        ("import asyncio\n", "shoal/node/reconfig.py"),
    ],
)
def test_purity_check_covers_the_pure_modules(source: str, rel: str) -> None:
    found = check_purity(source, rel)
    assert len(found) == 1, found
    assert f"pure module {rel.removesuffix('.py').replace('/', '.')}" in found[0].reason


@pytest.mark.parametrize(
    ("source", "rel"),
    [
        ("import json\nfrom urllib.parse import quote\n", "shoal/client/protocol.py"),
        ("import json\nfrom hashlib import blake2b\n", "shoal/registry/ownership.py"),
        ("import tomllib\nimport yaml\n", "shoal/config/formats.py"),
        ("import difflib\nimport hashlib\n", "shoal/config/model.py"),
        ("import asyncio\nimport httpx\n", "shoal/client/http.py"),  # not a pure module
        ("import time\n", "shoal/compute/local.py"),
        ("import time\nimport asyncio\n", "shoal/node/member.py"),  # the shell around them
    ],
)
def test_purity_check_allows_the_parsers_where_they_are_used(source: str, rel: str) -> None:
    assert check_purity(source, rel) == []


def test_purity_follows_imports_of_pure_modules() -> None:
    # Whatever the scheduler's events module is called, it is pure because the scheduler
    # imports it; a module nobody pure imports is not checked.
    sources = {
        "shoal/compute/scheduler.py": "from .stimuli import Event\n",
        "shoal/compute/stimuli.py": "import time\nfrom . import clock\n",
        "shoal/compute/clock.py": "import os\n",
        "shoal/compute/local.py": "import subprocess\n",
    }
    pure = pure_files(sources)
    assert sorted(pure) == [
        "shoal/compute/clock.py",
        "shoal/compute/scheduler.py",
        "shoal/compute/stimuli.py",
    ]
    found = [v for rel in pure for v in check_pure(sources[rel], rel, pure[rel])]
    assert sorted((v.path, v.statement) for v in found) == [
        ("shoal/compute/clock.py", "import os"),
        ("shoal/compute/stimuli.py", "import time"),
    ]


def test_purity_check_flags_io_builtins() -> None:
    source = "def f(path):\n    print(path)\n    return open(path).read()\n"
    found = check_purity(source, "shoal/kv/store.py")
    assert [(v.line, v.statement) for v in found] == [(2, "print"), (3, "open")]
    assert check_purity(source, "shoal/registry/keys.py")
    assert check_purity(source, "shoal/raft/sim/__main__.py") == []  # an entry point
    assert check_purity(source, "shoal/node/server.py") == []  # not pure


def test_global_random_check_covers_the_pure_modules() -> None:
    assert check_global_random("import random\nrandom.shuffle(x)\n", "shoal/compute/scheduler.py")
    assert check_global_random("import random\nrandom.random()\n", "shoal/compute/local.py") == []


def test_purity_check_flags_time_in_raft() -> None:
    found = check_purity("import os\nfrom time import monotonic\n", "shoal/raft/log.py")
    assert [(v.line, v.statement) for v in found] == [
        (1, "import os"),
        (2, "from time import monotonic"),
    ]
    assert "shoal/raft/log.py:2" in str(found[1])


@pytest.mark.parametrize(
    "rel",
    ["shoal/raft/sim/__main__.py", "shoal/raft/sim/demo.py", "shoal/kv/__main__.py"],
)
def test_purity_check_exempts_entry_points(rel: str) -> None:
    assert check_purity("import sys\nimport time\n", rel) == []


def test_purity_check_still_covers_the_rest_of_the_simulator() -> None:
    assert check_purity("import time\n", "shoal/raft/sim/runner.py")
    assert check_purity("import time\n", "shoal/raft/demo.py")


@pytest.mark.parametrize(
    ("source", "rel", "bad_line"),
    [
        ("from shoal.node import driver\n", "shoal/raft/log.py", 1),
        ("from ..node import driver\n", "shoal/raft/log.py", 1),
        ("from ... import node\n", "shoal/raft/sim/cluster.py", 1),
        ("import shoal.client\n", "shoal/kv/store.py", 1),
        ("from .. import client\n", "shoal/kv/__init__.py", 1),
        ("import shoal\n", "shoal/wire/models.py", 1),
        ("from shoal import __version__\n", "shoal/balance/p2c.py", 1),
        ("x = 1\nfrom shoal.wire import codec\n", "shoal/service/app.py", 2),
        ("from shoal.raft import RawNode\n", "shoal/newlayer/x.py", 1),
    ],
)
def test_direction_check_flags_upward_imports(source: str, rel: str, bad_line: int) -> None:
    found = check_direction(source, rel)
    assert len(found) == 1, found
    assert found[0].line == bad_line


@pytest.mark.parametrize(
    ("source", "rel"),
    [
        ("from . import log\nfrom .types import Entry\n", "shoal/raft/node.py"),
        ("from .. import types\n", "shoal/raft/sim/cluster.py"),
        ("from shoal.wire import models\nfrom ..wire import codec\n", "shoal/kv/store.py"),
        ("from shoal.raft import RawNode\nfrom shoal.kv import Store\n", "shoal/node/driver.py"),
        ("from shoal.node import run\nfrom shoal import __version__\n", "shoal/cli/main.py"),
        ("from shoal.service import Service\n", "shoal/__init__.py"),
    ],
)
def test_direction_check_allows_the_table(source: str, rel: str) -> None:
    assert check_direction(source, rel) == []


def test_global_random_check() -> None:
    source = (
        "import random\n"
        "from random import Random, shuffle\n"
        "rng: random.Random = random.Random(7)\n"
        "x = random.randint(1, 6)\n"
    )
    found = check_global_random(source, "shoal/raft/sim/net.py")
    assert [(v.line, v.statement) for v in found] == [
        (2, "from random import Random, shuffle"),
        (4, "random.randint"),
    ]
    assert check_global_random("import random as r\nr.random()\n", "shoal/balance/p2c.py")
    assert check_global_random("import random\nrandom.seed(1)\n", "shoal/cli/main.py") == []
