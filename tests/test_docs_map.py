"""docs/SECURITY.md and docs/RELIABILITY.md map each promise to its test: every test they
name must exist, so a renamed or deleted test cannot leave a promise resting on nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/SECURITY.md", "docs/RELIABILITY.md")
# `test_file.py::test_name`, `test_file.py`, or `::test_name` (the file named before it on
# the same line)
REF = re.compile(r"`(?:(?P<file>test_\w+\.py))?(?:::(?P<test>test_\w+))?`")


def _tests_in(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                node.name.startswith("test_"):
            names.add(node.name)
    return names


def references(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, file, test or None) for every test a page names."""
    found: list[tuple[int, str, str | None]] = []
    for number, line in enumerate(text.splitlines(), 1):
        current: str | None = None
        for match in REF.finditer(line):
            file, test = match.group("file"), match.group("test")
            if file is None and test is None:
                continue
            current = file or current
            assert current is not None, f"line {number}: `::{test}` with no file before it"
            found.append((number, current, test))
    return found


def test_references_are_read_as_meant() -> None:
    line = "| x | `test_a.py::test_one`, `::test_two`; `test_b.py` and `other` |"
    assert references(line) == [(1, "test_a.py", "test_one"), (1, "test_a.py", "test_two"),
                                (1, "test_b.py", None)]


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_promise_names_exists(doc: str) -> None:
    refs = references((ROOT / doc).read_text(encoding="utf-8"))
    assert len(refs) >= 20, f"{doc} names too few tests to be the map it claims to be"
    missing = []
    for number, file, test in refs:
        path = ROOT / "tests" / file
        if not path.exists():
            missing.append(f"{doc}:{number}: {file} does not exist")
        elif test is not None and test not in _tests_in(path):
            missing.append(f"{doc}:{number}: {file} has no {test}")
    assert not missing, "\n".join(missing)
