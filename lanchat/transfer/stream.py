"""The data channel: one TLS connection per transfer, owned by one thread, raw bytes.

The sender listens (blocking sockets, its own threads); the receiver connects, pins the
server's key to the peer's id, proves its own key in the channel as sessions do (it signs
the server's nonce and id), then asks for a file index and offset. Frames (the same
length-prefixed JSON as control) frame the raw bytes:

    S: hello   C: auth   C: file_request   S: file_start
    S: <bytes of file i from offset> S: file_end(i, sha256)   ... for each file ...
    C: file_done(sha256)

Both ends hash while they move bytes; on resume each hashes its prefix and the sender
restarts at 0 if the receiver's prefix differs. Nothing here runs on the node's loop.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lanchat.identity import Identity, auth_payload, new_nonce, node_id_from_cert, verify_proof
from lanchat.protocol import (
    HEADER,
    MAX_FRAME_BYTES,
    Auth,
    FileCancel,
    FileDone,
    FileEnd,
    FileRequest,
    FileStart,
    Hello,
    Message,
    ProtocolError,
    decode_payload,
    encode,
)
from lanchat.session import client_context, server_context
from lanchat.transfer import names

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)

SEND_CHUNK_BYTES = 4 << 20
RECV_BUFFER_BYTES = 1 << 20
HASH_BLOCK_BYTES = 4 << 20
STALL_S = 15.0
CONNECT_TIMEOUT_S = 5.0
ACCEPT_POLL_S = 0.5
PROGRESS_EVERY_S = 0.5
MAX_STREAMS = 64


class DataError(Exception):
    """A data connection failed; `resumable` says whether the bytes so far are kept."""

    def __init__(self, reason: str, *, resumable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resumable = resumable


def tree_hash(paths: tuple[str, ...], shas: tuple[str, ...]) -> str:
    """One hash for a folder: SHA-256 of `sha256sum`-style lines in offer order."""
    h = hashlib.sha256()
    for path, sha in zip(paths, shas, strict=True):
        h.update(f"{sha}  {path}\n".encode())
    return h.hexdigest()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise DataError("connection closed", resumable=True)
        got += k
    return bytes(buf)


def read_frame(sock: socket.socket) -> Message:
    """Read one control frame from a blocking socket."""
    (length,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if length == 0 or length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length} outside 1..{MAX_FRAME_BYTES}")
    return decode_payload(_recv_exact(sock, length))


def write_frame(sock: socket.socket, message: Message) -> None:
    """Write one control frame."""
    sock.sendall(encode(message))


def _expect(sock: socket.socket, kind: type[M]) -> M:
    message = read_frame(sock)
    if isinstance(message, FileCancel):
        raise DataError(f"peer stopped: {message.reason or 'cancelled'}", resumable=False)
    if not isinstance(message, kind):
        raise ProtocolError(f"expected {kind.T!r}, got {message.T!r}")
    return message


def hash_prefix(fd: int, length: int) -> hashlib._Hash:
    """SHA-256 of the first `length` bytes of an open file (GIL released while hashing)."""
    h = hashlib.sha256()
    buf = bytearray(HASH_BLOCK_BYTES)
    view = memoryview(buf)
    pos = 0
    while pos < length:
        n = os.preadv(fd, [view[:min(len(buf), length - pos)]], pos)
        if n <= 0:
            raise DataError("file shorter than expected", resumable=False)
        h.update(view[:n])
        pos += n
    return h


class _Throttle:
    """Calls `fn(done)` at most every PROGRESS_EVERY_S."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn
        self.last = 0.0

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.fn(done)


class _Offset:
    """Progress of one file reported as progress of the whole transfer."""

    def __init__(self, throttle: _Throttle, base: int) -> None:
        self.throttle = throttle
        self.base = base

    def __call__(self, n: int) -> None:
        self.throttle(self.base + n)


def _classify(exc: BaseException) -> DataError:
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        return DataError("stalled: no data moved in time", resumable=True)
    if isinstance(exc, ProtocolError):
        return DataError(f"bad data from peer: {exc.reason}", resumable=False)
    if isinstance(exc, ssl.SSLError):
        return DataError(f"TLS error: {exc.reason or exc}", resumable=True)
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DataError("disk full; free some space and accept again to resume",
                             resumable=True)
        return DataError(f"connection lost: {exc.strerror or exc}", resumable=True)
    return DataError(f"{type(exc).__name__}: {exc}", resumable=False)


# -- sender ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendJob:
    """What the sender streams for one accepted request."""

    transfer: str
    peer: str
    generation: int
    files: tuple[tuple[str, int], ...]  # source path, size
    paths: tuple[str, ...]  # offer paths, for the folder hash
    total: int


class SendOwner(Protocol):
    """The manager, as the sending side sees it (called from stream threads)."""

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """The job for this request, or a refusal reason."""

    def wanted(self, transfer: str, generation: int) -> bool:
        """False once cancelled or superseded by a newer connection."""

    def progress(self, job: SendJob, done: int) -> None:
        """Bytes confirmed sent so far (whole transfer)."""

    def sent(self, job: SendJob, sha256: str) -> None:
        """The receiver verified everything."""

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """The stream stopped."""


class FileStreamer:
    """Streams one request on one accepted TLS socket; subclass to misbehave in tests."""

    def __init__(self, sock: ssl.SSLSocket, job: SendJob, owner: SendOwner) -> None:
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
        hasher = None
        if offset > size or (offset and request.prefix is None):
            offset = 0
        elif offset:
            with open(path, "rb") as fh:
                hasher = hash_prefix(fh.fileno(), offset)
            if hasher.hexdigest() != request.prefix:
                log.info("transfer %s: receiver's prefix differs; restarting at 0", job.transfer)
                offset, hasher = 0, None
        write_frame(self.sock, FileStart(job.transfer, index, offset))
        done = sum(size for _, size in job.files[:index]) + offset
        progress = _Throttle(lambda n: self.owner.progress(job, n))
        shas: list[str] = []
        for i in range(index, len(job.files)):
            path, size = job.files[i]
            sha = self.stream_file(path, size, offset, hasher, _Offset(progress, done))
            done += size - offset
            write_frame(self.sock, FileEnd(job.transfer, i, sha))
            shas.append(sha)
            offset, hasher = 0, None
        progress(done, force=True)
        answer = _expect(self.sock, FileDone)
        self.owner.sent(job, answer.sha256)

    def stream_file(self, path: str, size: int, offset: int, hasher: hashlib._Hash | None,
                    progress: Callable[[int], None]) -> str:
        """Send bytes [offset, size) of one file; return its SHA-256."""
        h = hasher or hashlib.sha256()
        view = memoryview(self.buf)
        with open(path, "rb", buffering=0) as fh:
            fh.seek(offset)
            pos = offset
            while pos < size:
                if not self.owner.wanted(self.job.transfer, self.job.generation):
                    raise DataError("cancelled", resumable=False)
                n = fh.readinto(view[:min(len(self.buf), size - pos)])
                if not n:
                    raise DataError(f"{path} shrank while sending", resumable=False)
                chunk = view[:n]
                h.update(chunk)
                self.sock.sendall(chunk)
                pos += n
                progress(pos - offset)
        return h.hexdigest()


class DataServer:
    """The sender's data listener: an accept thread and one thread per connection."""

    streamer: type[FileStreamer] = FileStreamer

    def __init__(self, identity: Identity, nick: Callable[[], str], hosts: list[str],
                 owner: SendOwner, *, stall_s: float = STALL_S) -> None:
        self.identity = identity
        self.nick = nick
        self.hosts = hosts or ["0.0.0.0"]
        self.owner = owner
        self.stall_s = stall_s
        self.port = 0
        self.counters: dict[str, int] = {}
        self._ctx = server_context(identity)
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._streams = 0

    def start(self) -> int:
        """Bind every host on one ephemeral port and start accepting; return the port."""
        for host in self.hosts:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, self.port))
            except OSError as exc:
                sock.close()
                log.warning("file data listener: cannot bind %s:%d: %s", host, self.port, exc)
                continue
            sock.listen(16)
            self.port = sock.getsockname()[1]
            self._socks.append(sock)
        if not self._socks:
            raise OSError("no address to listen on for file data")
        self._thread = threading.Thread(target=self._accept_loop, name="lanchat-files-accept",
                                        daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop accepting; running streams end at their next chunk or timeout."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(ACCEPT_POLL_S * 4)
        for sock in self._socks:
            sock.close()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(self._socks, [], [], ACCEPT_POLL_S)
            except (OSError, ValueError):
                return
            for sock in ready:
                try:
                    conn, addr = sock.accept()
                except OSError:
                    continue
                with self._lock:
                    busy = self._streams >= MAX_STREAMS
                    if not busy:
                        self._streams += 1
                if busy:
                    self._count("data_shed")
                    conn.close()
                    continue
                threading.Thread(target=self._serve, args=(conn, addr[0]), daemon=True,
                                 name="lanchat-files-send").start()

    def _serve(self, conn: socket.socket, address: str) -> None:
        job: SendJob | None = None
        try:
            conn.settimeout(self.stall_s)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._ctx.wrap_socket(conn, server_side=True) as tls:
                peer = self._authenticate(tls)
                request = _expect(tls, FileRequest)
                claim = self.owner.claim(request.transfer, peer)
                if isinstance(claim, str):
                    self._count("data_refused")
                    log.info("file data from %s for %s refused: %s", address,
                             request.transfer, claim)
                    write_frame(tls, FileCancel(request.transfer, claim))
                    return
                job = claim
                self.streamer(tls, job, self.owner).run(request)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none escapes
            error = _classify(exc)
            if job is None:
                self._count("data_refused")
                log.info("file data connection from %s dropped: %s", address, error.reason)
            else:
                self.owner.send_failed(job, error)
        finally:
            conn.close()
            with self._lock:
                self._streams -= 1

    def _authenticate(self, tls: ssl.SSLSocket) -> str:
        nonce = new_nonce()
        write_frame(tls, Hello(self.identity.node_id, self.nick(), nonce))
        auth = _expect(tls, Auth)
        payload = auth_payload(nonce, self.identity.node_id, auth.node_id)
        try:
            proven = verify_proof(auth.key, auth.sig, payload)
        except ValueError as exc:
            raise ProtocolError(f"key proof refused: {exc}") from None
        if proven != auth.node_id:
            raise ProtocolError("key proof is for another id")
        return proven


# -- receiver -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecvItem:
    """One file to receive: its offer path, size, place below the root, and known hash."""

    path: str
    size: int
    dest: tuple[str, ...]
    sha256: str = ""


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


class RecvOwner(Protocol):
    """The manager, as the receiving side sees it (called from stream threads)."""

    def wanted(self, transfer: str, generation: int) -> bool:
        """False once cancelled."""

    def progress(self, job: RecvJob, done: int) -> None:
        """Bytes received so far (whole transfer, including resumed prefixes)."""

    def file_complete(self, job: RecvJob, index: int, final: str, sha256: str) -> None:
        """File `index` is verified and published under `final`."""

    def received(self, job: RecvJob, sha256: str) -> None:
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

    def start(self) -> threading.Thread:
        """Run on a new daemon thread."""
        thread = threading.Thread(target=self.run, name="lanchat-files-recv", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Connect, authenticate, fetch, verify, publish; report the outcome."""
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            self.owner.receive_failed(self.job, _classify(exc))

    def _connect(self) -> ssl.SSLSocket:
        job = self.job
        raw = socket.create_connection((job.address, job.port), timeout=CONNECT_TIMEOUT_S)
        try:
            raw.settimeout(self.stall_s)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = client_context().wrap_socket(raw, server_hostname=None)
        except BaseException:
            raw.close()
            raise
        der = tls.getpeercert(binary_form=True)
        if not der or node_id_from_cert(der) != job.peer:
            tls.close()
            raise DataError("the data server's key is not the peer's; refused", resumable=False)
        hello = _expect(tls, Hello)
        if hello.node_id != job.peer:
            tls.close()
            raise DataError("data server hello id does not match its key", resumable=False)
        payload = auth_payload(hello.nonce, job.peer, self.identity.node_id)
        write_frame(tls, Auth(self.identity.node_id, self.nick, self.identity.key_b64,
                              self.identity.sign(payload), 0))
        return tls

    def _run(self) -> None:
        job = self.job
        with self._connect() as tls:
            index = job.index
            shas = [item.sha256 for item in job.items]
            if index >= len(job.items):
                self._confirm(tls)
            while index < len(job.items):
                shas[index] = self._fetch_file(tls, index, first=index == job.index)
                index += 1
            if job.offer_sha and len(job.items) == 1 and shas[0] != job.offer_sha:
                raise DataError("file does not match the offered SHA-256", resumable=False)
            result = shas[0] if len(job.items) == 1 and not self._folder() else tree_hash(
                tuple(i.path for i in job.items), tuple(shas))
            write_frame(tls, FileDone(job.transfer, result))
        self.owner.received(job, result)

    def _confirm(self, tls: ssl.SSLSocket) -> None:
        """Everything is here already (the sender missed our file_done): prove it again."""
        job = self.job
        last = len(job.items) - 1
        item = job.items[last]
        write_frame(tls, FileRequest(job.transfer, last, item.size, item.sha256 or None))
        start = _expect(tls, FileStart)
        end = _expect(tls, FileEnd)
        if (start.index, start.offset) != (last, item.size) or end.sha256 != item.sha256:
            raise DataError("the sender's file changed after it was received",
                            resumable=False)

    def _folder(self) -> bool:
        return len(self.job.items[0].dest) > 1

    def _fetch_file(self, tls: ssl.SSLSocket, index: int, *, first: bool) -> str:
        job = self.job
        item = job.items[index]
        parent, leaf = item.dest[:-1], item.dest[-1]
        part = leaf + names.PART_SUFFIX
        done_before = sum(i.size for i in job.items[:index])
        progress = _Throttle(lambda n: self.owner.progress(job, done_before + n))
        with names.open_dir(job.root, parent, create=True) as dir_fd:
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
                        hasher = hash_prefix(fd, offset)
                        prefix = hasher.hexdigest()
                    write_frame(tls, FileRequest(job.transfer, index, offset, prefix))
                    start = _expect(tls, FileStart)
                    if start.index != index or start.offset not in (0, offset):
                        raise ProtocolError("file_start does not answer the request")
                    if start.offset == 0 and offset:
                        os.ftruncate(fd, 0)
                        offset, hasher = 0, None
                elif offset:
                    os.ftruncate(fd, 0)
                    offset = 0
                if fd < 0:  # written only once the sender has answered
                    fd = names.open_part(dir_fd, part)
                h = hasher or hashlib.sha256()
                progress(offset, force=True)
                self._copy(tls, fd, h, offset, item.size, progress)
                keep_part = False
                try:
                    end = _expect(tls, FileEnd)
                except ProtocolError as exc:
                    raise DataError(f"sender sent more than the offered {item.size} bytes or "
                                    f"a bad trailer ({exc.reason})", resumable=False) from None
                sha = h.hexdigest()
                if end.index != index:
                    raise DataError("file_end for another file", resumable=False)
                if end.sha256 != sha:
                    raise DataError(f"SHA-256 mismatch for {item.path}: the data is not what "
                                    "the sender hashed; .part deleted", resumable=False)
                os.fsync(fd)
            except DataError as exc:
                if not exc.resumable and not keep_part:
                    os.unlink(part, dir_fd=dir_fd)
                raise
            except Exception as exc:
                error = _classify(exc)
                if not error.resumable and not keep_part:
                    os.unlink(part, dir_fd=dir_fd)
                raise error from exc
            finally:
                if fd >= 0:
                    os.close(fd)
            final = names.publish(dir_fd, part, leaf)
        progress(item.size, force=True)
        self.owner.file_complete(job, index, final, sha)
        return sha

    def _copy(self, tls: ssl.SSLSocket, fd: int, h: hashlib._Hash, offset: int, size: int,
              progress: Callable[[int], None]) -> None:
        """Receive exactly size - offset raw bytes into the file at offset."""
        view = memoryview(self.buf)
        pos = offset
        os.lseek(fd, offset, os.SEEK_SET)
        while pos < size:
            if not self.owner.wanted(self.job.transfer, self.job.generation):
                raise DataError("cancelled", resumable=False)
            want = min(len(self.buf), size - pos)
            got = 0
            while got < want:
                k = tls.recv_into(view[got:want], want - got)
                if not k:
                    os.write(fd, view[:got])
                    h.update(view[:got])
                    raise DataError(f"sender closed the connection after {pos + got} of "
                                    f"{size} bytes", resumable=True)
                got += k
            chunk = view[:got]
            written = 0
            while written < got:
                written += os.write(fd, chunk[written:])
            h.update(chunk)
            pos += got
            progress(pos)
