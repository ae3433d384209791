"""Golden transcripts of the Raft core: every tests/raft/testdata/*.txt, one test each.

Each file is a scripted interaction (see interaction.py for the commands) named after the
thesis section it exercises; its expected output is what `shoal.raft.describe` prints for
what the members did. A behaviour change shows up as a diff against the file. After an
intended change, `pytest tests/raft --rewrite` writes the new output back; read the
`git diff` of testdata/ before committing it -- it is the change's effect on the protocol.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from shoal.raft.sim.bugs import inject
from shoal.raft.sim.checker import Violation

from .datadriven import FormatError, ScriptFile, parse, read, render
from .interaction import InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def run_file(test: ScriptFile) -> tuple[dict[int, str], list[str]]:
    """Run every case of a file in one fresh environment: (outputs by line, mismatches)."""
    env = InteractionEnv()
    outputs: dict[int, str] = {}
    mismatches: list[str] = []
    for case in test.cases:
        actual = env.handle(case)
        outputs[case.line] = actual
        if actual != case.expected:
            diff = difflib.unified_diff(
                case.expected.split("\n"),
                actual.split("\n"),
                "expected",
                "actual",
                lineterm="",
            )
            mismatches.append(f"{case.where}: {case.raw}\n" + "\n".join(diff))
    return outputs, mismatches


def test_there_are_golden_files() -> None:
    assert len(FILES) >= 10, FILES


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_interaction(path: Path, request: pytest.FixtureRequest) -> None:
    test = read(path)
    outputs, mismatches = run_file(test)
    if request.config.getoption("--rewrite"):
        path.write_text(render(test, outputs), encoding="utf-8")
        return
    # Every mismatching case is shown (a change usually ripples through a scenario), the
    # first one first: that is where behaviour departed from the transcript.
    assert not mismatches, f"{len(mismatches)} case(s) differ:\n\n" + "\n\n".join(mismatches)


# -- the golden files can fail, and --rewrite makes them pass ---------------------------


def _changed_line(text: str) -> tuple[str, int]:
    """`text` with the first expected line of a case containing "became leader" altered,
    and the 1-based number of the line changed."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "became leader at term" in line:
            lines[i] = line.replace("became leader", "became follower")
            return "\n".join(lines), i + 1
    raise AssertionError("no 'became leader' line to change")


def test_a_changed_expected_line_fails_and_names_the_case() -> None:
    path = TESTDATA / "3.4_leader_election.txt"
    text, changed = _changed_line(path.read_text(encoding="utf-8"))
    _, mismatches = run_file(parse(text, path.as_posix()))
    assert len(mismatches) == 1, mismatches
    case_line = int(mismatches[0].split(":", 2)[1])
    assert case_line < changed  # the case whose output holds the changed line
    assert "-  INFO n2 became follower at term 1" in mismatches[0]
    assert "+  INFO n2 became leader at term 1" in mismatches[0]


def test_rewrite_output_passes_and_keeps_comments(tmp_path: Path) -> None:
    source = (TESTDATA / "3.4_leader_election.txt").read_text(encoding="utf-8")
    text, _ = _changed_line(source)
    test = parse(text, "changed.txt")
    outputs, mismatches = run_file(test)
    assert mismatches
    rewritten = render(test, outputs)
    assert rewritten == source  # back to the committed transcript, comments and all
    assert run_file(parse(rewritten, "rewritten.txt"))[1] == []


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("campain n1\n----\nok\n", "unknown command 'campain'"),
        ("add-nodes 3 voters=(n1,n2,n3) prevote=false\n----\nok\n", "does not take ['prevote']"),
        ("campaign n9\n----\nok\n", "no member 'n9'"),
        ("log-level loud\n----\nok\n", "log-level takes one of"),
    ],
)
def test_a_mistyped_script_fails_loudly(script: str, message: str) -> None:
    with pytest.raises(FormatError, match=re.escape(message)):
        run_file(parse(script, "bad.txt"))


@pytest.mark.parametrize(
    ("bug", "stem"),
    [
        ("old-term-commit", "3.6.2_commit_only_current_term"),
        ("vote-any-log", "3.6.1_election_restriction"),
        ("read-without-quorum", "6.4_read_index"),
        ("vote-twice", "6.2_check_quorum"),
    ],
)
def test_each_classic_bug_breaks_the_transcript_of_its_section(bug: str, stem: str) -> None:
    """The simulator's deliberate bugs (shoal.raft.sim.bugs), run against the scenario of
    the thesis section each one violates: the transcript changes, or the safety checker
    stops the run."""
    with inject(bug):
        try:
            _, mismatches = run_file(read(TESTDATA / f"{stem}.txt"))
        except Violation:
            return
    assert mismatches, f"{bug} left {stem}.txt unchanged"
