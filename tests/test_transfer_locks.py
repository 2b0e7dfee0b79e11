"""Transfer state has one lock discipline: every change to the shared tables of the
transfer extension (core.py's `GUARDED`) happens inside `with self._lock:`. Checked on
the source, so a write without the lock (the old `_deadlines` race: written by `offer()`
while the control thread iterated it) fails here, not once in a thousand runs."""

from __future__ import annotations

import ast
from pathlib import Path

from lanchat.transfer.core import GUARDED

TRANSFER = Path(__file__).resolve().parents[1] / "lanchat" / "transfer"
MUTATORS = {"pop", "setdefault", "clear", "update", "add", "discard", "remove", "append"}


def _unlocked_writes(path: Path) -> list[str]:
    found: list[str] = []

    def locked(stack: list[ast.AST]) -> bool:
        return any(isinstance(n, ast.With) and any(
            ast.unparse(item.context_expr) == "self._lock" for item in n.items)
            for n in stack)

    def visit(node: ast.AST, stack: list[ast.AST], func: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name
        name = ""
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = [node.target] if isinstance(node, ast.AugAssign) else node.targets
            for t in targets:
                if (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Attribute)
                        and t.value.attr in GUARDED):
                    name = t.value.attr
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in MUTATORS and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in GUARDED
                and ast.unparse(node.func.value).startswith("self.")):
            name = node.func.value.attr
        if name and func != "__init__" and not locked(stack):
            found.append(f"{path.name}:{getattr(node, 'lineno', '?')} {func}() changes "
                         f"{name} without self._lock")
        for child in ast.iter_child_nodes(node):
            visit(child, [*stack, node], func)

    visit(ast.parse(path.read_text()), [], "")
    return found


def test_every_change_to_shared_transfer_state_holds_the_lock() -> None:
    problems = [p for path in sorted(TRANSFER.glob("*.py")) for p in _unlocked_writes(path)]
    assert problems == []


def test_the_check_finds_an_unlocked_write(tmp_path: Path) -> None:
    """The check itself can fail: a write outside the lock is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text("class M:\n    def offer(self):\n        self._deadlines['t'] = 1.0\n"
                      "        with self._lock:\n            self._deadlines.pop('t')\n")
    assert _unlocked_writes(sample) == [
        "sample.py:3 offer() changes _deadlines without self._lock"]
