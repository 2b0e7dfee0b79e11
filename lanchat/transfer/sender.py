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
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lanchat.identity import Identity, auth_payload, new_nonce, verify_proof
from lanchat.protocol import (
    Auth,
    FileCancel,
    FileDone,
    FileEnd,
    FileRequest,
    FileStart,
    Hello,
    ProtocolError,
)
from lanchat.session import server_context
from lanchat.transfer.channel import TlsChannel
from lanchat.transfer.wire import (
    STALL_S,
    DataError,
    Offset,
    Throttle,
    classify,
    expect,
    file_stamp,
    hash_prefix,
    write_frame,
)

log = logging.getLogger(__name__)

SEND_CHUNK_BYTES = 1 << 20  # fits the L2 cache between read, hash and encrypt; see channel.py
ACCEPT_JOIN_S = 2.0
MAX_STREAMS = 64


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
        for i in range(index, len(job.files)):
            path, size = job.files[i]
            if known is not None:  # the receiver has it all and the file is unchanged
                sha = known
            else:
                before = _stamp(path)
                sha = self.stream_file(path, size, offset, hasher, Offset(progress, done))
                if before and before == _stamp(path):
                    self.owner.hashed(job, i, before, sha)
            done += size - offset
            write_frame(self.sock, FileEnd(job.transfer, i, sha))
            offset, hasher, known = 0, None, None
        progress(done, force=True)
        answer = expect(self.sock, FileDone)
        self.owner.sent(job, answer.sha256)

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
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes the accept loop at once

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
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(ACCEPT_JOIN_S)
        for sock in self._socks:
            sock.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([*(s.fileno() for s in self._socks),
                                             self._wake_r], [], [])
            except (OSError, ValueError):
                return
            if self._wake_r in ready:
                return
            for sock in (s for s in self._socks if s.fileno() in ready):
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
            with TlsChannel(conn, self._ctx, server_side=True) as tls:
                tls.handshake()
                peer = self._authenticate(tls)
                request = expect(tls, FileRequest)
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
            error = classify(exc)
            if job is None:
                self._count("data_refused")
                log.info("file data connection from %s dropped: %s", address, error.reason)
            else:
                self.owner.send_failed(job, error)
        finally:
            conn.close()
            with self._lock:
                self._streams -= 1

    def _authenticate(self, tls: TlsChannel) -> str:
        nonce = new_nonce()
        write_frame(tls, Hello(self.identity.node_id, self.nick(), nonce))
        auth = expect(tls, Auth)
        payload = auth_payload(nonce, self.identity.node_id, auth.node_id)
        try:
            proven = verify_proof(auth.key, auth.sig, payload)
        except ValueError as exc:
            raise ProtocolError(f"key proof refused: {exc}") from None
        if proven != auth.node_id:
            raise ProtocolError("key proof is for another id")
        return proven

