"""File digests: which algorithm, prefix and tree digests, and hashing offered files early.

SHA-256 is what every peer understands. BLAKE3 (the `blake3` package) costs ~4x less CPU per
byte here (0.20 against 0.84 CPU-s/GiB on one core) and is used when both ends are lanchat:
the offer lists the sender's algorithms, the receiver names one in its `file_request`.

`Prehasher` hashes a file on its own thread as soon as it is offered, while the receiver
decides. The stream that later sends the file takes over what is done: the digest, or the
hasher part way through (it then hashes only the rest as it sends), so a file is read for
hashing at most once per side.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lanchat.protocol import FILE_HASHES, SHA256
from lanchat.transfer.wire import DataError

log = logging.getLogger(__name__)

HASH_BLOCK_BYTES = 1 << 20
PREHASH_KEEP = 256  # finished digests a Prehasher remembers (the records keep them too)


class Hasher(Protocol):
    """What hashlib's and blake3's hash objects have in common (hexdigest does not end it)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object:
        """Add bytes."""

    def hexdigest(self) -> str:
        """The digest so far, as hex."""


@functools.cache
def available() -> tuple[str, ...]:
    """The algorithms this install can make, best first (BLAKE3 only if its package loads)."""
    try:
        import blake3  # noqa: F401
    except ImportError:
        log.info("the blake3 package is missing; files are hashed with SHA-256 only")
        return (SHA256,)
    return FILE_HASHES


def choose(offered: Sequence[str], mine: Sequence[str], *, claimed: bool = False) -> str:
    """The receiver's pick: its first algorithm the sender offered (none listed: SHA-256).
    An offer that claims a SHA-256 (`claimed`) is checked against it, so in SHA-256."""
    if claimed:
        return SHA256
    for alg in mine:
        if alg in offered:
            return alg
    return SHA256


def new_hasher(alg: str) -> Hasher:
    """A fresh hash object for `alg`."""
    if alg == SHA256:
        return hashlib.sha256()
    if alg == "blake3":
        from blake3 import blake3  # imported when a file first moves, not at start-up

        h: Hasher = blake3()
        return h
    raise ValueError(f"unknown hash {alg!r}")


def hash_prefix(fd: int, length: int, alg: str, *, hasher: Hasher | None = None,
                start: int = 0) -> Hasher:
    """Hash bytes [start, length) of an open file into `hasher` (new if None), which holds
    the digest of [0, start) already. The GIL is released while hashing."""
    h = hasher if hasher is not None else new_hasher(alg)
    buf = bytearray(HASH_BLOCK_BYTES)
    view = memoryview(buf)
    pos = start
    while pos < length:
        n = os.preadv(fd, [view[:min(len(buf), length - pos)]], pos)
        if n <= 0:
            raise DataError("file shorter than expected", resumable=False)
        h.update(view[:n])
        pos += n
    return h


def tree_hash(paths: tuple[str, ...], digests: tuple[str, ...], alg: str) -> str:
    """One digest for a folder: the digest of `sha256sum`-style lines in offer order."""
    h = new_hasher(alg)
    for path, digest in zip(paths, digests, strict=True):
        h.update(f"{digest}  {path}\n".encode())
    return h.hexdigest()


def file_stamp(st: os.stat_result, alg: str) -> str:
    """What must stay the same for a cached digest of a file to still be true."""
    return f"{alg}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def stamp_of(path: str, alg: str) -> str:
    """`file_stamp` of a path, or "" if it cannot be read."""
    try:
        return file_stamp(os.stat(path), alg)
    except OSError:
        return ""


@dataclass(frozen=True)
class Partial:
    """A digest begun by the Prehasher: `hasher` holds bytes [0, pos) of the file."""

    hasher: Hasher
    pos: int


@dataclass
class _Job:
    path: str
    stamp: str
    alg: str
    stop: bool = False
    handed: Partial | None = None


class Prehasher:
    """Hashes offered files, one at a time, on one daemon thread; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._current: _Job | None = None
        self._done: collections.OrderedDict[str, str] = collections.OrderedDict()  # stamp
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, paths: Iterable[str], alg: str) -> None:
        """Hash these files soon (ones known, queued or unreadable are skipped)."""
        with self._cond:
            if self._closed:
                return
            busy = {j.stamp for j in self._queue}
            if self._current is not None:
                busy.add(self._current.stamp)
            for path in paths:
                stamp = stamp_of(path, alg)
                if stamp and stamp not in busy and stamp not in self._done:
                    self._queue.append(_Job(path, stamp, alg))
                    busy.add(stamp)
            if self._queue and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lanchat-files-hash",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def take(self, path: str, alg: str) -> str | Partial | None:
        """For a stream about to send `path`: its digest if done, else the hasher part way
        (the background work on it stops), else None (not begun: the stream hashes it)."""
        stamp = stamp_of(path, alg)
        if not stamp:
            return None
        with self._cond:
            self._queue = collections.deque(j for j in self._queue if j.stamp != stamp)
            job = self._current
            if job is not None and job.stamp == stamp:
                job.stop = True
                while self._current is job:
                    self._cond.wait()
                if job.handed is not None:
                    return job.handed
            return self._done.get(stamp)

    def known(self, path: str, alg: str) -> str | None:
        """The finished digest of `path` as it is now, if any (nothing stops)."""
        stamp = stamp_of(path, alg)
        with self._cond:
            return self._done.get(stamp) if stamp else None

    def close(self) -> None:
        """Stop after the current block; forget the queue."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(5.0)

    def _run(self) -> None:
        buf = bytearray(HASH_BLOCK_BYTES)
        view = memoryview(buf)
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._current = self._queue.popleft()
            try:
                digest = self._hash(job, view)
            except OSError as exc:
                log.debug("cannot hash %s ahead: %s", job.path, exc)
                digest = None
            with self._cond:
                if digest is not None:
                    self._done[job.stamp] = digest
                    while len(self._done) > PREHASH_KEEP:
                        self._done.popitem(last=False)
                self._current = None
                self._cond.notify_all()

    def _hash(self, job: _Job, view: memoryview) -> str | None:
        h = new_hasher(job.alg)
        with open(job.path, "rb", buffering=0) as fh:
            fd = fh.fileno()
            if file_stamp(os.fstat(fd), job.alg) != job.stamp:
                return None
            pos = 0
            while True:
                with self._cond:
                    if job.stop or self._closed:
                        job.handed = Partial(h, pos)
                        return None
                n = os.preadv(fd, [view], pos)
                if not n:
                    break
                h.update(view[:n])
                pos += n
            if file_stamp(os.fstat(fd), job.alg) != job.stamp:
                return None  # changed while read: no digest is kept
        return h.hexdigest()
