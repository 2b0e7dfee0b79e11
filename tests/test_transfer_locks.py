"""Transfer state has one owner and one lock discipline (lanchat/transfer/book.py, and
recorder.py for the save throttle):

- the shared tables (each module's `GUARDED`) are named only in their module, and there
  only under `with self._lock:` (or in a `*_locked` helper, which runs only under it);
- while the lock is held the owner calls nothing but its `*_locked` helpers and the
  tables' own methods: no disk, no node, no other part, so no lock is taken under it.

Checked on the source, so a table touched without the lock (the old `_deadlines` race:
written by `offer()` while the control thread iterated it), or a part reaching into the
book's tables, fails here, not once in a thousand runs."""

from __future__ import annotations

import ast
from pathlib import Path

from lanchat.transfer import book, recorder

LANCHAT = Path(__file__).resolve().parents[1] / "lanchat"
OWNERS = {LANCHAT / "transfer" / "book.py": book.GUARDED,
          LANCHAT / "transfer" / "recorder.py": recorder.GUARDED}
GUARDED = book.GUARDED | recorder.GUARDED
# the modules that use the transfer extension: none of them may reach into the book
CALLERS = ("transfer", "interop/localsend", "web")
TABLE_METHODS = {"get", "pop", "setdefault", "clear", "update", "add", "discard", "remove",
                 "append", "items", "values", "keys"}


def _is_lock(item: ast.withitem) -> bool:
    return ast.unparse(item.context_expr) == "self._lock"


def _owner_problems(path: Path, guarded: frozenset[str] = GUARDED) -> list[str]:
    """References to the tables outside the lock, and calls out of the book under it."""
    found: list[str] = []

    def visit(node: ast.AST, func: str, locked: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name
            locked = func.endswith("_locked")
        if isinstance(node, ast.With) and any(_is_lock(i) for i in node.items):
            locked = True
        where = f"{path.name}:{getattr(node, 'lineno', '?')} {func}()"
        if (isinstance(node, ast.Attribute) and node.attr in guarded
                and ast.unparse(node.value) == "self" and func != "__init__" and not locked):
            found.append(f"{where} uses {node.attr} without self._lock")
        if isinstance(node, ast.Call) and locked:
            called = ast.unparse(node.func)
            parts = called.split(".")
            if parts[0] == "self" and not (
                    parts[-1].endswith("_locked")
                    or (len(parts) == 3 and parts[1] in guarded
                        and parts[2] in TABLE_METHODS)):
                found.append(f"{where} calls {called} while holding self._lock")
        if (isinstance(node, ast.Call) and not locked
                and ast.unparse(node.func).endswith("_locked")):
            found.append(f"{where} calls {ast.unparse(node.func)} without self._lock")
        for child in ast.iter_child_nodes(node):
            visit(child, func, locked)

    visit(ast.parse(path.read_text()), "", False)
    return found


def _foreign_uses(path: Path, root: Path = LANCHAT) -> list[str]:
    """Names of the owners' tables in a module that does not own them: on another object
    anywhere, and at all in the transfer package (its parts keep no copies of them)."""
    guarded = GUARDED - OWNERS.get(path, frozenset())
    ours = path.relative_to(root).parts[0] == "transfer"
    return [f"{path.relative_to(root)}:{node.lineno} names {node.attr}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr in guarded
            and (ours or ast.unparse(node.value) != "self")]


def test_the_owners_touch_their_tables_only_under_their_lock_and_call_nothing_out() -> None:
    problems = [p for path, guarded in OWNERS.items() for p in _owner_problems(path, guarded)]
    assert problems == []


def test_no_other_module_reaches_into_the_owners_tables() -> None:
    problems = [p for sub in CALLERS for path in sorted((LANCHAT / sub).rglob("*.py"))
                for p in _foreign_uses(path)]
    assert problems == []


def test_the_checks_find_what_they_forbid(tmp_path: Path) -> None:
    """The checks themselves can fail: each kind of breach is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class Book:\n"
        "    def offer(self, t):\n"
        "        self._active['t'] = 1\n"
        "        with self._lock:\n"
        "            self._active.pop('t')\n"
        "            self.records.save(t)\n"
        "            self._remember_locked(t)\n"
        "        self._remember_locked(t)\n"
        "    def _remember_locked(self, t):\n"
        "        self._transfers[t.id] = t\n"
        "        self.persist(t.id)\n")
    assert _owner_problems(sample) == [
        "sample.py:3 offer() uses _active without self._lock",
        "sample.py:6 offer() calls self.records.save while holding self._lock",
        "sample.py:8 offer() calls self._remember_locked without self._lock",
        "sample.py:11 _remember_locked() calls self.persist while holding self._lock",
    ]
    part = tmp_path / "transfer" / "part.py"
    part.parent.mkdir()
    part.write_text("def peek(self, book):\n    return book._senders, self._active\n")
    assert _foreign_uses(part, tmp_path) == ["transfer/part.py:2 names _senders",
                                             "transfer/part.py:2 names _active"]
    face = tmp_path / "web" / "face.py"
    face.parent.mkdir()
    face.write_text("def peek(self, manager):\n    return manager.book._senders, self._active\n")
    assert _foreign_uses(face, tmp_path) == ["web/face.py:2 names _senders"]
