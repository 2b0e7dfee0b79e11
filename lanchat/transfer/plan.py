"""What to send and where it lands: walking a folder, choosing safe destination names."""

from __future__ import annotations

import os
from pathlib import Path

from lanchat.protocol import (
    MAX_FILES_PER_OFFER,
)
from lanchat.transfer import names
from lanchat.transfer.core import TransferError
from lanchat.transfer.records import Item, Transfer


def walk(root: Path) -> tuple[Item, ...]:
    """Regular files below `root` (symlinks not followed), relative paths with '/'."""
    items: list[Item] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            items.append(Item(rel, os.path.getsize(full)))
            if len(items) > MAX_FILES_PER_OFFER:
                raise TransferError(f"{root} has more than {MAX_FILES_PER_OFFER} files; "
                                    "send it as an archive")
    if not items:
        raise TransferError(f"{root} has no files to send")
    return tuple(items)


def plan(t: Transfer, root: str) -> tuple[Item, ...]:
    """Choose safe, unused destination names below `root` for every file of an offer."""
    with names.open_dir(root, (), create=False) as fd:
        leaf = names.unique_name(fd, names.safe_relpath(t.name)[-1])
        if not t.folder:
            item = t.items[0]
            return (Item(item.path, item.size, (leaf,)),)
        os.mkdir(leaf, 0o755, dir_fd=fd)
    used: dict[tuple[str, ...], set[str]] = {}
    out = []
    for item in t.items:
        parts = names.safe_relpath(item.path)
        parent: tuple[str, ...] = (leaf,)
        for comp in parts[:-1]:
            used.setdefault(parent, set()).add(comp)
            parent = (*parent, comp)
        taken = used.setdefault(parent, set())
        name = next(names.numbered(parts[-1], n) for n in range(names.MAX_UNIQUE_TRIES)
                    if names.numbered(parts[-1], n) not in taken
                    and (*parent, names.numbered(parts[-1], n)) not in used)
        taken.add(name)
        out.append(Item(item.path, item.size, (*parent, name)))
    return tuple(out)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


