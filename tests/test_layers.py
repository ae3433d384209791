"""Keep the layering of DESIGN.md true without anyone having to remember it.

Three checks run over every ``.py`` file under ``shoal/``, parsed with ``ast`` (nothing
is imported, so a broken module cannot hide a violation):

1. Import direction: a layer imports only the shoal layers that DESIGN.md's table allows.
   The layer of a file is the first package under ``shoal/`` (``shoal/raft/log.py`` is
   ``raft``); files directly in ``shoal/`` are the ``root`` facade.
2. Purity: the pure layers import, outside shoal, only side-effect-free stdlib modules
   from an allowlist -- no I/O, no clock, no threads, no global state.
3. Determinism: the pure layers never touch the global ``random`` generator; an RNG is
   passed in as a ``random.Random``.

The checkers are plain functions over source text, so the self-tests at the bottom can
prove that each one is able to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
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
    "node": frozenset({"wire", "raft", "kv", "registry", "config"}),
    "registry": frozenset({"wire"}),
    "config": frozenset({"wire"}),
    "client": frozenset({"wire", "registry", "config"}),
    "balance": frozenset(),
    "resilience": frozenset(),
    # The registry and config models are the vocabulary shared by server and clients
    # (DESIGN.md's own row for them); the SDK and the gateway read them directly.
    "service": frozenset({"client", "balance", "resilience", "observe", "registry", "config"}),
    "gateway": frozenset({"client", "balance", "resilience", "observe", "registry", "config"}),
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


def check_purity(source: str, rel: str) -> list[Violation]:
    mod = module_file(rel)
    if mod.layer not in PURE_LAYERS or mod.is_entry_point:
        return []
    tree = ast.parse(source, filename=rel)
    found = []
    for ref in imports_of(tree, mod):
        if ref.internal or ref.module in PURE_STDLIB:
            continue
        top = ref.module.split(".")[0]
        if top in FORBIDDEN_IN_PURE:
            reason = f"pure layer {mod.layer!r} must not import {top!r} (I/O, clock or globals)"
        else:
            reason = f"{ref.module!r} is not in the pure-layer stdlib allowlist"
        found.append(Violation(rel, ref.line, ref.statement, reason))
    return found


def check_global_random(source: str, rel: str) -> list[Violation]:
    mod = module_file(rel)
    # Entry points are not exempt here: a seed must replay the same run, demo included.
    if mod.layer not in PURE_LAYERS:
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


def run_check(check: str) -> list[Violation]:
    checker = {
        "direction": check_direction,
        "purity": check_purity,
        "global_random": check_global_random,
    }[check]
    found: list[Violation] = []
    for rel in shoal_files():
        found.extend(checker((REPO / rel).read_text(encoding="utf-8"), rel))
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


# --- the checkers can fail -------------------------------------------------------------


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
