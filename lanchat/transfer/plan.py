"""What to send and where it lands: walking a folder, choosing safe destination names."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from lanchat.protocol import (
    MAX_FILES_PER_OFFER,
)
from lanchat.transfer import names
from lanchat.transfer.records import Item, Transfer, TransferError


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


def source_files(t: Transfer) -> tuple[tuple[str, int], ...]:
    """An outgoing transfer's files on this disk: (path, size) in offer order."""
    root = Path(t.source)
    if not t.folder:
        return ((str(root), t.size),)
    return tuple((str(root.joinpath(*i.path.split("/"))), i.size) for i in t.items)


def delete_parts(t: Transfer) -> None:
    """Remove the `.part` files an unfinished incoming transfer left (best effort)."""
    if t.direction != "in" or not t.dest_dir:
        return
    for item in t.items[t.index:]:
        if not item.dest:
            continue
        try:
            with names.open_dir(t.dest_dir, item.dest[:-1], create=False) as fd:
                os.unlink(item.dest[-1] + names.PART_SUFFIX, dir_fd=fd)
        except OSError:
            pass


def plan(t: Transfer, root: str) -> tuple[Item, ...]:
    """Choose safe, unused destination names below `root` for every file of an offer.

    The top name is reserved on disk at once (`<name>.part` or the folder, created
    exclusively), so two offers accepted back to back never share a destination.
    """
    with names.open_dir(root, (), create=False) as fd:
        leaf = _reserve(fd, names.safe_relpath(t.name)[-1], folder=t.folder)
    if not t.folder:
        item = t.items[0]
        return (Item(item.path, item.size, (leaf,)),)
    folders: dict[tuple[tuple[str, ...], str], str] = {}  # (parent, safe name) -> chosen
    taken: dict[tuple[str, ...], set[str]] = {}  # names used in a folder, files and folders
    out = []
    for item in t.items:
        parts = names.safe_relpath(item.path)
        parent: tuple[str, ...] = (leaf,)
        for comp in parts[:-1]:
            chosen = folders.get((parent, comp))
            if chosen is None:
                chosen = _free(comp, taken.setdefault(parent, set()), file=False)
                folders[(parent, comp)] = chosen
            parent = (*parent, chosen)
        name = _free(parts[-1], taken.setdefault(parent, set()), file=True)
        out.append(Item(item.path, item.size, (*parent, name)))
    return tuple(out)


def _free(name: str, taken: set[str], *, file: bool) -> str:
    """The first of 'name', 'name (1)', ... not in `taken`, which it then joins (a file
    takes its `.part` name too, so no other file of the folder can resume from it)."""
    for n in range(names.MAX_UNIQUE_TRIES):
        candidate = names.numbered(name, n)
        part = candidate + names.PART_SUFFIX
        if candidate not in taken and not (file and part in taken):
            taken.update((candidate, part) if file else (candidate,))
            return candidate
    raise TransferError(f"too many files named like {name!r} in one folder")


def _reserve(dir_fd: int, name: str, *, folder: bool) -> str:
    """Create the folder, or the empty `.part` of a file, under a free name; return it."""
    for n in range(names.MAX_UNIQUE_TRIES):
        candidate = names.numbered(name, n)
        if names.exists(dir_fd, candidate) or names.exists(dir_fd,
                                                            candidate + names.PART_SUFFIX):
            continue
        try:
            if folder:
                os.mkdir(candidate, 0o755, dir_fd=dir_fd)
            else:
                os.close(os.open(candidate + names.PART_SUFFIX, os.O_WRONLY | os.O_CREAT
                                 | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                 dir_fd=dir_fd))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name like {name!r}")


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


