"""The sending side of the data channel: a listener, and one streaming thread per request.

The sender listens (blocking sockets, its own threads); a receiver connects, pins our key
to our id, proves its own key in the channel as sessions do (it signs our nonce and id),
then asks for a file index and offset, naming the digest it wants (hashing.py):

    S: hello   C: auth   C: file_request   S: file_start
    S: <bytes of file i from offset> S: file_end(i, digest)   ... for each file ...
    C: file_done(digest)

The file is read with readinto into one reused buffer, hashed (if it must be) and encrypted
from that buffer, and written with one sendall per chunk. Each file is hashed once: by the
Prehasher while the receiver decides, or while it streams, or partly each (the stream
takes over the Prehasher's hasher). The digest is kept with the file's stamp so it need
not be read again when a receiver that already has everything asks to confirm it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lanchat.protocol import (
    SHA256,
    FileDone,
    FileEnd,
    FileRequest,
    FileStart,
    ProtocolError,
)
from lanchat.transfer.channel import TlsChannel
from lanchat.transfer.hashing import (
    Hasher,
    Partial,
    available,
    hash_prefix,
    new_hasher,
    stamp_of,
    tree_hash,
)
from lanchat.transfer.wire import (
    DataError,
    Offset,
    Throttle,
    expect,
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
    hashes: tuple[tuple[str, str], ...] = ()  # per file: (stamp, digest) once known
    folder: bool = False  # the result is a tree hash even for one file


class SendOwner(Protocol):
    """The manager, as the sending side sees it (called from stream threads)."""

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """The job for this request, or a refusal reason."""

    def wanted(self, transfer: str, generation: int) -> bool:
        """False once cancelled or superseded by a newer connection."""

    def progress(self, job: SendJob, done: int) -> None:
        """Bytes confirmed sent so far (whole transfer)."""

    def hashed(self, job: SendJob, index: int, stamp: str, digest: str) -> None:
        """File `index`, unchanged while it was read (`stamp`, which names the algorithm),
        has this digest."""

    def prehashed(self, path: str, alg: str) -> str | Partial | None:
        """What the Prehasher has of this file's digest (see hashing.Prehasher.take)."""

    def sent(self, job: SendJob, digest: str, alg: str) -> None:
        """The receiver verified everything (`digest` made by `alg`)."""

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """The stream stopped."""


class FileStreamer:
    """Streams one request on one accepted TLS connection; subclass to misbehave in tests."""

    def __init__(self, sock: TlsChannel, job: SendJob, owner: SendOwner) -> None:
        self.sock = sock
        self.job = job
        self.owner = owner
        self.buf = bytearray(SEND_CHUNK_BYTES)
        self.alg = SHA256

    def run(self, request: FileRequest) -> None:
        """Answer the request: start frame, then every file from the agreed point."""
        job = self.job
        if request.index >= len(job.files):
            raise ProtocolError("file index beyond the offer")
        if request.hash not in available():
            raise ProtocolError(f"asked for a {request.hash} digest, which was not offered")
        self.alg = alg = request.hash
        index, offset = request.index, request.offset
        path, size = job.files[index]
        ahead = self._ahead(index)
        if offset > size or (offset and request.prefix is None):
            offset = 0
        elif offset:
            if isinstance(ahead, str) and offset == size:
                prefix = ahead
            else:
                base = ahead if isinstance(ahead, Partial) and ahead.pos <= offset else None
                with open(path, "rb") as fh:
                    h = hash_prefix(fh.fileno(), offset, alg,
                                    hasher=base.hasher if base else None,
                                    start=base.pos if base else 0)
                prefix = h.hexdigest()
                if not isinstance(ahead, str):
                    ahead = Partial(h, offset)  # also right when we restart at 0
            if prefix != request.prefix:
                log.info("transfer %s: receiver's prefix differs; restarting at 0", job.transfer)
                offset = 0
        write_frame(self.sock, FileStart(job.transfer, index, offset))
        done = sum(size for _, size in job.files[:index]) + offset
        progress = Throttle(lambda n: self.owner.progress(job, n))
        digests: list[str | None] = [None] * len(job.files)
        for i in range(index, len(job.files)):
            path, size = job.files[i]
            if i > index:
                ahead = self._ahead(i)
            before = stamp_of(path, alg)
            digest = self.stream_file(path, size, offset, ahead, Offset(progress, done))
            if before and before == stamp_of(path, alg):
                self.owner.hashed(job, i, before, digest)
            digests[i] = digest
            done += size - offset
            write_frame(self.sock, FileEnd(job.transfer, i, digest))
            offset = 0
        progress(done, force=True)
        answer = expect(self.sock, FileDone)
        if answer.digest != self._expected(digests):
            raise DataError("the receiver reports a digest that is not the file's; "
                            "not verified", resumable=False)
        self.owner.sent(job, answer.digest, self.alg)

    def _ahead(self, index: int) -> str | Partial | None:
        """What is known of file `index`'s digest before it is sent: kept in the record,
        made by the Prehasher while the receiver decided, or part of it."""
        path = self.job.files[index][0]
        if index < len(self.job.hashes):
            stamp, digest = self.job.hashes[index]
            if stamp and digest and stamp == stamp_of(path, self.alg):
                return digest
        return self.owner.prehashed(path, self.alg)

    def _expected(self, digests: list[str | None]) -> str:
        """The result the receiver must report: the file's digest, or the folder's tree
        digest (files received before this request are hashed again unless known)."""
        job = self.job
        full = []
        for i, digest in enumerate(digests):
            if digest is None:
                ahead = self._ahead(i)
                digest = ahead if isinstance(ahead, str) else None
            if digest is None:
                with open(job.files[i][0], "rb") as fh:
                    digest = hash_prefix(fh.fileno(), job.files[i][1], self.alg).hexdigest()
            full.append(digest)
        if len(full) == 1 and not job.folder:
            return full[0]
        return tree_hash(job.paths, tuple(full), self.alg)

    def stream_file(self, path: str, size: int, offset: int, ahead: str | Partial | None,
                    progress: Callable[[int], None]) -> str:
        """Send bytes [offset, size) of one file; return its digest. `ahead` is the digest
        already known (nothing is hashed) or a hasher holding a prefix (only bytes past it
        are hashed)."""
        if isinstance(ahead, str):
            self._send_range(path, size, offset, None, size, progress)
            return ahead
        h, hashed = (ahead.hasher, ahead.pos) if ahead else (new_hasher(self.alg), 0)
        if hashed < offset:
            raise AssertionError("a prefix hasher must cover the bytes before the offset")
        self._send_range(path, size, offset, h, hashed, progress)
        return h.hexdigest()

    def _send_range(self, path: str, size: int, offset: int, h: Hasher | None, hashed: int,
                    progress: Callable[[int], None]) -> None:
        """Send bytes [offset, size), feeding `h` (which holds [0, hashed)) the bytes past
        `hashed`."""
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
                pos += n
                if h is not None and pos > hashed:
                    h.update(chunk[max(0, n - (pos - hashed)):])
                    hashed = pos
                send(chunk)
                progress(pos - offset)


