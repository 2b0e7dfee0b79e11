"""The receiving side of the data channel: one thread and connection per transfer.

The receiver connects to the sender's data port, pins the server's key to the peer's id,
proves its own key, asks for a file index and offset (with the digest of its `.part` prefix
when it resumes, by the algorithm chosen when the offer came: hashing.py), and writes what
arrives into `<name>.part`: TLS records are decrypted into one reused buffer, hashed inline
from it (a hash thread measured slower on 2 shared cores) and written with os.write. One
fsync per file, before it is published.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from lanchat.identity import Identity, auth_payload, node_id_from_cert
from lanchat.protocol import (
    HASH_NAMES,
    SHA256,
    Auth,
    FileDone,
    FileEnd,
    FileRequest,
    FileStart,
    Hello,
    ProtocolError,
)
from lanchat.tls import client_context
from lanchat.transfer import names
from lanchat.transfer.channel import TlsChannel
from lanchat.transfer.hashing import Hasher, hash_prefix, new_hasher, tree_hash
from lanchat.transfer.wire import (
    CONNECT_TIMEOUT_S,
    STALL_S,
    DataError,
    Throttle,
    classify,
    expect,
    write_frame,
)

RECV_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class RecvItem:
    """One file to receive: its offer path, size, place below the root, and known digest."""

    path: str
    size: int
    dest: tuple[str, ...]
    digest: str = ""


@dataclass(frozen=True)
class RecvJob:
    """What the receiver fetches: from whom, where to, starting at which file."""

    transfer: str
    peer: str
    address: str
    port: int
    generation: int
    root: str
    items: tuple[RecvItem, ...]
    index: int
    offer_sha: str | None
    total: int
    hash: str = SHA256  # the digest both ends make (chosen from the offer's list)


class RecvOwner(Protocol):
    """The manager, as the receiving side sees it (called from stream threads)."""

    def wanted(self, transfer: str, generation: int) -> bool:
        """False once cancelled."""

    def progress(self, job: RecvJob, done: int) -> None:
        """Bytes received so far (whole transfer, including resumed prefixes)."""

    def file_complete(self, job: RecvJob, index: int, final: str, digest: str) -> None:
        """File `index` is verified and published under `final`."""

    def received(self, job: RecvJob, digest: str) -> None:
        """Everything is verified and in place."""

    def receive_failed(self, job: RecvJob, error: DataError) -> None:
        """The stream stopped."""


class Receiver:
    """Fetches one transfer on its own thread and connection."""

    def __init__(self, job: RecvJob, identity: Identity, nick: str, owner: RecvOwner, *,
                 stall_s: float = STALL_S) -> None:
        self.job = job
        self.identity = identity
        self.nick = nick
        self.owner = owner
        self.stall_s = stall_s
        self.buf = bytearray(RECV_BUFFER_BYTES)
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self._stopped = False
        job_total = job.total
        self.progress = Throttle(lambda n: owner.progress(job, min(n, job_total)))

    def start(self) -> threading.Thread:
        """Run on a new daemon thread."""
        self.thread = threading.Thread(target=self.run, name="lanchat-files-recv", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """End the stream now (its socket is shut down); the thread reports and exits."""
        self._stopped = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self) -> None:
        """Connect, authenticate, fetch, verify, publish; report the outcome."""
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            self.owner.receive_failed(self.job, classify(exc))

    def _connect(self) -> TlsChannel:
        job = self.job
        raw = socket.create_connection((job.address, job.port), timeout=CONNECT_TIMEOUT_S)
        self.sock = raw
        tls = TlsChannel(raw, client_context(), server_side=False)
        try:
            if self._stopped:
                raise DataError("stopped", resumable=True)
            raw.settimeout(self.stall_s)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls.handshake()
            der = tls.getpeercert(binary_form=True)
            if not der or node_id_from_cert(der) != job.peer:
                raise DataError("the data server's key is not the peer's; refused",
                                resumable=False)
            hello = expect(tls, Hello)
            if hello.node_id != job.peer:
                raise DataError("data server hello id does not match its key",
                                resumable=False)
            payload = auth_payload(hello.nonce, job.peer, self.identity.node_id)
            write_frame(tls, Auth(self.identity.node_id, self.nick, self.identity.key_b64,
                                  self.identity.sign(payload), 0))
        except BaseException:
            tls.close()
            raise
        return tls

    def _run(self) -> None:
        job = self.job
        with self._connect() as tls:
            index = job.index
            digests = [item.digest for item in job.items]
            if index >= len(job.items):
                self._confirm(tls)
            while index < len(job.items):
                digests[index] = self._fetch_file(tls, index, first=index == job.index)
                index += 1
            self.progress(job.total, force=True)
            result = digests[0] if len(job.items) == 1 and not self._folder() else tree_hash(
                tuple(i.path for i in job.items), tuple(digests), job.hash)
            write_frame(tls, FileDone(job.transfer, result))
        self.owner.received(job, result)

    def _confirm(self, tls: TlsChannel) -> None:
        """Everything is here already (the sender missed our file_done): prove it again."""
        job = self.job
        last = len(job.items) - 1
        item = job.items[last]
        write_frame(tls, FileRequest(job.transfer, last, item.size, item.digest or None,
                                     job.hash))
        start = expect(tls, FileStart)
        end = expect(tls, FileEnd)
        if (start.index, start.offset) != (last, item.size) or end.digest != item.digest:
            raise DataError("the sender's file changed after it was received",
                            resumable=False)

    def _folder(self) -> bool:
        return len(self.job.items[0].dest) > 1

    def _fetch_file(self, tls: TlsChannel, index: int, *, first: bool) -> str:
        job = self.job
        item = job.items[index]
        parent, leaf = item.dest[:-1], item.dest[-1]
        part = leaf + names.PART_SUFFIX
        done_before = sum(i.size for i in job.items[:index])
        throttle = self.progress

        def progress(n: int, force: bool = False) -> None:
            throttle(done_before + n, force)

        with _local(item.path), names.open_dir(job.root, parent, create=True) as dir_fd:
            try:
                fd = names.open_part(dir_fd, part, create=False)
            except FileNotFoundError:
                fd = -1
            keep_part = True
            try:
                offset = os.fstat(fd).st_size if fd >= 0 else 0
                hasher = None
                if offset > item.size:
                    os.ftruncate(fd, 0)
                    offset = 0
                if first:
                    prefix = None
                    if offset:
                        hasher = hash_prefix(fd, offset, job.hash)
                        prefix = hasher.hexdigest()
                    write_frame(tls, FileRequest(job.transfer, index, offset, prefix,
                                                 job.hash))
                    start = expect(tls, FileStart)
                    if start.index != index or start.offset not in (0, offset):
                        raise ProtocolError("file_start does not answer the request")
                    if start.offset == 0 and offset:
                        os.ftruncate(fd, 0)
                        offset, hasher = 0, None
                elif offset:
                    os.ftruncate(fd, 0)
                    offset = 0
                if fd < 0:  # written only once the sender has answered, if still wanted
                    if not self.owner.wanted(job.transfer, job.generation):
                        raise DataError("cancelled", resumable=False)
                    with _local(item.path):
                        fd = names.open_part(dir_fd, part)
                h = hasher or new_hasher(job.hash)
                progress(offset, force=first)
                self._copy(tls, fd, h, offset, item.size, progress)
                keep_part = False
                try:
                    end = expect(tls, FileEnd)
                except ProtocolError as exc:
                    raise DataError(f"sender sent more than the offered {item.size} bytes or "
                                    f"a bad trailer ({exc.reason})", resumable=False) from None
                digest = h.hexdigest()
                if end.index != index:
                    raise DataError("file_end for another file", resumable=False)
                if end.digest != digest:
                    raise DataError(f"{HASH_NAMES[job.hash]} mismatch for {item.path}: the data is "
                                    "not what the sender hashed; .part deleted",
                                    resumable=False)
                if (job.offer_sha and job.hash == SHA256 and len(job.items) == 1
                        and digest != job.offer_sha):
                    raise DataError("file does not match the offered SHA-256; .part deleted",
                                    resumable=False)
                with _local(item.path):
                    os.fsync(fd)  # once per file, before the rename publishes it
            except DataError as exc:
                if not exc.resumable and not keep_part:
                    _unlink(dir_fd, part)
                raise
            except Exception as exc:
                error = classify(exc)
                if not error.resumable and not keep_part:
                    _unlink(dir_fd, part)
                raise error from exc
            finally:
                if fd >= 0:
                    os.close(fd)
            with _local(item.path):
                final = names.publish(dir_fd, part, leaf)
        progress(item.size)
        self.owner.file_complete(job, index, final, digest)
        return digest

    def _copy(self, tls: TlsChannel, fd: int, h: Hasher, offset: int, size: int,
              progress: Callable[[int], None]) -> None:
        """Receive exactly size - offset raw bytes into the file at offset."""
        buf = self.buf
        view = memoryview(buf)
        recv_into, update, write = tls.recv_into, h.update, os.write
        wanted, transfer, generation = self.owner.wanted, self.job.transfer, self.job.generation
        pos = offset
        os.lseek(fd, offset, os.SEEK_SET)
        while pos < size:
            if not wanted(transfer, generation):
                raise DataError("cancelled", resumable=False)
            want = min(len(buf), size - pos)
            got = 0
            while got < want:
                k = recv_into(view[got:want], want - got)
                if not k:
                    try:
                        _write_all(fd, view[:got])
                    except OSError as exc:
                        raise local_error(exc, "the file") from exc
                    update(view[:got])
                    raise DataError(f"sender closed the connection after {pos + got} of "
                                    f"{size} bytes", resumable=True)
                got += k
            chunk = view[:got]
            try:
                n = write(fd, chunk)
                if n != got:  # a short write: only on a nearly full disk
                    _write_all(fd, chunk[n:])
            except OSError as exc:
                raise local_error(exc, "the file") from exc
            update(chunk)
            pos += got
            progress(pos)


def _write_all(fd: int, data: memoryview) -> None:
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def local_error(exc: OSError, what: str) -> DataError:
    """A failure of our own disk or folders: only a full disk is worth resuming."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError("disk full; free some space and accept again to resume",
                         resumable=True)
    return DataError(f"cannot write {what} here: {exc.strerror or exc}", resumable=False)


@contextmanager
def _local(what: str) -> Iterator[None]:
    """Report OSErrors in this block as local (disk, folder) failures, not network ones."""
    try:
        yield
    except DataError:
        raise
    except OSError as exc:
        if isinstance(exc, TimeoutError | ConnectionError):
            raise
        raise local_error(exc, what) from exc
