"""Safe names for received files, and opening them without ever leaving the chosen folder.

A peer names its files; we never trust that name as a path. Each component is made safe on
its own (no separators, no `..`, no control characters, no reserved device names, no
trailing dots or spaces, NFC, at most `MAX_NAME_BYTES` UTF-8 bytes with the extension
kept), and every folder under the download root is opened with O_NOFOLLOW, one component
at a time, so a symlink swapped in anywhere below the root cannot redirect a write.
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

NAME_MAX_BYTES = 255
# room for " (9999)" and ".part" so the suffixed names still fit in NAME_MAX_BYTES
MAX_NAME_BYTES = NAME_MAX_BYTES - 16
MAX_EXT_BYTES = 32
MAX_DEPTH = 32
MAX_UNIQUE_TRIES = 10_000
PART_SUFFIX = ".part"
UNTITLED = "untitled"

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff<>:\"|?*/\\\\]")
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
             *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10)),
             "COM¹", "COM²", "COM³", "LPT¹", "LPT²", "LPT³"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `limit` bytes."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore")


def split_ext(name: str) -> tuple[str, str]:
    """Split 'a.tar.gz' into ('a.tar', '.gz'); a leading dot is not an extension."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return name, ""
    return name[:dot], name[dot:]


def safe_component(name: str) -> str:
    """Return one file or folder name that is safe on Linux, macOS and Windows."""
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE.sub("_", name)
    name = name.strip().rstrip(". ")
    if name in ("", ".", ".."):
        return UNTITLED
    if name.split(".")[0].rstrip(" ").upper() in _RESERVED:
        name = "_" + name
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, ext = split_ext(name)
        if len(ext.encode()) > MAX_EXT_BYTES:
            stem, ext = name, ""
        stem = _truncate_utf8(stem, MAX_NAME_BYTES - len(ext.encode())).rstrip(". ")
        name = (stem or UNTITLED) + ext
    return name


def safe_relpath(path: str) -> tuple[str, ...]:
    """Split a peer's relative path into safe components; `..`, `.` and empty parts go."""
    parts = [p for p in re.split(r"[/\\]+", path) if p not in ("", ".", "..")]
    cleaned = [safe_component(p) for p in parts]
    return tuple(cleaned[-MAX_DEPTH:]) or (UNTITLED,)


def numbered(name: str, n: int) -> str:
    """'report.pdf', 2 -> 'report (2).pdf'."""
    if n == 0:
        return name
    stem, ext = split_ext(name)
    return f"{stem} ({n}){ext}"


def exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def unique_name(dir_fd: int, name: str, taken: set[str] | None = None) -> str:
    """The first of 'name', 'name (1)', ... such that neither it nor its .part exists."""
    taken = taken or set()
    for n in range(MAX_UNIQUE_TRIES):
        candidate = numbered(name, n)
        if candidate in taken:
            continue
        if not exists(dir_fd, candidate) and not exists(dir_fd, candidate + PART_SUFFIX):
            return candidate
    raise FileExistsError(errno.EEXIST, f"no free name like {name!r}")


@contextmanager
def open_dir(root: str, parts: Sequence[str], *, create: bool) -> Iterator[int]:
    """Open root/parts... as a directory fd, refusing a symlink at every step below root."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise PermissionError(errno.EACCES, f"unsafe path component {part!r}")
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PermissionError(errno.EACCES,
                                          f"{part!r} is a link or not a folder; refused") from None
                raise
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def open_part(dir_fd: int, name: str, *, create: bool = True) -> int:
    """Open `name` in the folder for read and write; never through a symlink."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    return os.open(name, flags, 0o644, dir_fd=dir_fd)


def publish(dir_fd: int, part: str, name: str) -> str:
    """Move `part` to `name`, or `name (n)` if taken; never overwrite. Return the name used."""
    for n in range(MAX_UNIQUE_TRIES):
        candidate = numbered(name, n)
        try:
            os.link(part, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd,
                    follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            if exists(dir_fd, candidate):  # no hard links here: check, then rename
                continue
            os.rename(part, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return candidate
        os.unlink(part, dir_fd=dir_fd)
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name like {name!r}")
