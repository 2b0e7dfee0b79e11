"""The package's layers (docs/ARCHITECTURE.md, "Layers"): every import of every module,
those inside functions too, goes to its own layer or one below, and a face never imports
another face. A module put in the package root is core, so it may not import a capability
or a face either."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lanchat"
# Lowest first; a subpackage not named here is an error, so a new one gets a layer.
LAYERS = {
    "core": 0, "protocol": 0,
    "commands": 1,
    "discovery": 2, "transfer": 2, "rooms": 2, "interop": 2, "doctor": 2, "web": 2,
    "assembly": 3,
    "shell": 4, "headless": 4,
    "cli": 5, "__main__": 5,
}
FACES = {"shell", "headless"}


def part_of(dotted: str, package: Path) -> str:
    """The layer name of a module: its subpackage, or core for the package root."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return "core"
    return parts[1] if (package / parts[1]).is_dir() or parts[1] == "__main__" else "core"


def module_name(path: Path, package: Path) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, name: str, package_dir: Path) -> set[str]:
    """Every lanchat module `path` imports, absolute or relative."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names
                         if _exists(package_dir.parent / f"{base}.{a.name}".replace(".", "/")))
    return {m for m in found if m == "lanchat" or m.startswith("lanchat.")}


def _exists(stem: Path) -> bool:
    return stem.is_dir() or stem.with_suffix(".py").exists()


def wrong_imports(package: Path = PACKAGE) -> list[str]:
    """One line for each import that runs up a layer or goes from a face to another."""
    wrong = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        mine = part_of(name, package)
        for target in sorted(imported(path, name, package)):
            theirs = part_of(target, package)
            if target == "lanchat" or theirs == mine:
                continue
            if LAYERS[theirs] > LAYERS[mine]:
                wrong.append(f"{name} ({mine}) imports {target} ({theirs}), a layer above")
            elif mine in FACES and theirs in FACES:
                wrong.append(f"{name} imports {target}: a face imports another face")
    return wrong


def test_every_subpackage_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), f"give {sorted(folders - set(LAYERS))} a layer"


def test_no_import_runs_up_a_layer_or_between_faces() -> None:
    assert wrong_imports() == []


def test_the_check_sees_an_import_that_runs_up(tmp_path: Path) -> None:
    """The check is not blind: in a package laid out like ours, a core module importing a
    face inside a function, and a face importing another face, are reported."""
    package = tmp_path / "lanchat"
    for folder in ("shell", "headless"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "node.py").write_text("def f() -> None:\n    from lanchat.shell import app\n")
    (package / "shell" / "app.py").write_text("from . import render\n")
    (package / "shell" / "render.py").write_text("from ..headless import describe\n")
    assert wrong_imports(package) == [
        "lanchat.node (core) imports lanchat.shell (shell), a layer above",
        "lanchat.node (core) imports lanchat.shell.app (shell), a layer above",
        "lanchat.shell.render imports lanchat.headless: a face imports another face"]
