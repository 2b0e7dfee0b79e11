"""The node's home folder: made on start and locked to one running node; files in it are
written whole or not at all (`write_atomic`)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lanchat.errors import NodeError

LOCK_FILE = "lock"  # holds the pid of the node using the home


class HomeLock:
    """An exclusive lock on a home, held while a node runs in it."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def take(self, home: Path) -> None:
        """Make the home if needed and lock it; raise NodeError if another node has it."""
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create home {home}: {exc}") from None
        fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise NodeError(
                f"home {home} is in use by another lanchat (pid {other or '?'}); "
                "give this one its own --home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Let another node use the home (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) so a crash leaves the old or the new content,
    never half: a temporary file beside it, flushed to disk, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
