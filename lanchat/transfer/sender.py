"""The sending side of the data channel: a listener, and one streaming thread per request.

The sender listens (blocking sockets, its own threads); a receiver connects, pins our key
to our id, proves its own key in the channel as sessions do (it signs our nonce and id),
then asks for a file index and offset:

    S: hello   C: auth   C: file_request   S: file_start
    S: <bytes of file i from offset> S: file_end(i, sha256)   ... for each file ...
    C: file_done(sha256)

The file is read with readinto into one reused buffer, hashed and encrypted from that
buffer, and written with one sendall per chunk. It is hashed once, while it streams; the
hash is kept with the file's (dev, inode, size, mtime) so it need not be read again when
a receiver that already has everything asks to confirm it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lanchat.protocol import (
    FileDone,
    FileEnd,
    FileRequest,
    FileStart,
    ProtocolError,
)
from lanchat.transfer.channel import TlsChannel
from lanchat.transfer.wire import (
    DataError,
    Offset,
    Throttle,
    expect,
    file_stamp,
    hash_prefix,
    tree_hash,
    write_frame,
)

log = logging.getLogger(__name__)

SEND_CHUNK_BYTES = 1 << 20  # fits the L2 cache between read, hash and encrypt; see channel.py


@dataclass(frozen=True)
class SendJob:
    """What the sender streams for one accepted request."""

    transfer: str
    peer: str
    generation: int
    files: tuple[tuple[str, int], ...]  # source path, size
    paths: tuple[str, ...]  # offer paths, for the folder hash
    total: int
    hashes: tuple[tuple[str, str], ...] = ()  # per file: (stamp, sha256) once known
    folder: bool = False  # the result is a tree hash even for one file


class SendOwner(Protocol):
    """The manager, as the sending side sees it (called from stream threads)."""

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """The job for this request, or a refusal reason."""

    def wanted(self, transfer: str, generation: int) -> bool:
        """False once cancelled or superseded by a newer connection."""

    def progress(self, job: SendJob, done: int) -> None:
        """Bytes confirmed sent so far (whole transfer)."""

    def hashed(self, job: SendJob, index: int, stamp: str, sha256: str) -> None:
        """File `index`, unchanged while it was read (`stamp`), has this SHA-256."""

    def sent(self, job: SendJob, sha256: str) -> None:
        """The receiver verified everything."""

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """The stream stopped."""


class FileStreamer:
    """Streams one request on one accepted TLS connection; subclass to misbehave in tests."""

    def __init__(self, sock: TlsChannel, job: SendJob, owner: SendOwner) -> None:
        self.sock = sock
        self.job = job
        self.owner = owner
        self.buf = bytearray(SEND_CHUNK_BYTES)

    def run(self, request: FileRequest) -> None:
        """Answer the request: start frame, then every file from the agreed point."""
        job = self.job
        if request.index >= len(job.files):
            raise ProtocolError("file index beyond the offer")
        index, offset = request.index, request.offset
        path, size = job.files[index]
        hasher: hashlib._Hash | None = None
        known: str | None = None
        if offset > size or (offset and request.prefix is None):
            offset = 0
        elif offset:
            known = self._cached(index) if offset == size else None
            prefix = known
            if known is None:
                with open(path, "rb") as fh:
                    hasher = hash_prefix(fh.fileno(), offset)
                prefix = hasher.hexdigest()
            if prefix != request.prefix:
                log.info("transfer %s: receiver's prefix differs; restarting at 0", job.transfer)
                offset, hasher, known = 0, None, None
        write_frame(self.sock, FileStart(job.transfer, index, offset))
        done = sum(size for _, size in job.files[:index]) + offset
        progress = Throttle(lambda n: self.owner.progress(job, n))
        shas: list[str | None] = [None] * len(job.files)
        for i in range(index, len(job.files)):
            path, size = job.files[i]
            if known is not None:  # the receiver has it all and the file is unchanged
                sha = known
            else:
                before = _stamp(path)
                sha = self.stream_file(path, size, offset, hasher, Offset(progress, done))
                if before and before == _stamp(path):
                    self.owner.hashed(job, i, before, sha)
            shas[i] = sha
            done += size - offset
            write_frame(self.sock, FileEnd(job.transfer, i, sha))
            offset, hasher, known = 0, None, None
        progress(done, force=True)
        answer = expect(self.sock, FileDone)
        if answer.sha256 != self._expected(shas):
            raise DataError("the receiver reports a SHA-256 that is not the file's; "
                            "not verified", resumable=False)
        self.owner.sent(job, answer.sha256)

    def _expected(self, shas: list[str | None]) -> str:
        """The result the receiver must report: the file's hash, or the folder's tree hash
        (files received before this request are hashed again unless their hash is kept)."""
        job = self.job
        full = []
        for i, sha in enumerate(shas):
            if sha is None:
                sha = self._cached(i)
            if sha is None:
                with open(job.files[i][0], "rb") as fh:
                    sha = hash_prefix(fh.fileno(), job.files[i][1]).hexdigest()
            full.append(sha)
        if len(full) == 1 and not job.folder:
            return full[0]
        return tree_hash(job.paths, tuple(full))

    def _cached(self, index: int) -> str | None:
        if index >= len(self.job.hashes):
            return None
        stamp, sha = self.job.hashes[index]
        return sha if stamp and sha and stamp == _stamp(self.job.files[index][0]) else None

    def stream_file(self, path: str, size: int, offset: int, hasher: hashlib._Hash | None,
                    progress: Callable[[int], None]) -> str:
        """Send bytes [offset, size) of one file; return its SHA-256."""
        h = hasher or hashlib.sha256()
        buf = self.buf
        view = memoryview(buf)
        wanted, transfer, generation = self.owner.wanted, self.job.transfer, self.job.generation
        send = self.sock.sendall
        with open(path, "rb", buffering=0) as fh:
            fh.seek(offset)
            pos = offset
            while pos < size:
                if not wanted(transfer, generation):
                    raise DataError("cancelled", resumable=False)
                n = fh.readinto(view[:min(len(buf), size - pos)])
                if not n:
                    raise DataError(f"{path} shrank while sending", resumable=False)
                chunk = view[:n]
                h.update(chunk)
                send(chunk)
                pos += n
                progress(pos - offset)
        return h.hexdigest()


def _stamp(path: str) -> str:
    try:
        return file_stamp(os.stat(path))
    except OSError:
        return ""
