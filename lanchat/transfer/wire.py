"""What both ends of a data connection share: frames, errors, progress (digests: hashing.py).

Frames on the data connection are the control protocol's (4-byte length, JSON payload);
file bytes travel raw between `file_start` and `file_end`. Nothing here owns a socket.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from lanchat.protocol import (
    HEADER,
    MAX_FRAME_BYTES,
    FileCancel,
    Message,
    ProtocolError,
    decode_payload,
    encode,
)

M = TypeVar("M", bound=Message)

STALL_S = 15.0
CONNECT_TIMEOUT_S = 5.0
PROGRESS_EVERY_S = 0.5


class Conn(Protocol):
    """A data connection as the streams use it (see channel.TlsChannel)."""

    def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0) -> int:
        """Read at least one byte into `buffer`; 0 once the peer has closed."""

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of `data`."""


class DataError(Exception):
    """A data connection failed; `resumable` says whether the bytes so far are kept."""

    def __init__(self, reason: str, *, resumable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resumable = resumable


def _recv_exact(conn: Conn, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = conn.recv_into(view[got:], n - got)
        if not k:
            raise DataError("connection closed", resumable=True)
        got += k
    return bytes(buf)


def read_frame(conn: Conn) -> Message:
    """Read one control frame from a blocking connection."""
    (length,) = HEADER.unpack(_recv_exact(conn, HEADER.size))
    if length == 0 or length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length} outside 1..{MAX_FRAME_BYTES}")
    return decode_payload(_recv_exact(conn, length))


def write_frame(conn: Conn, message: Message) -> None:
    """Write one control frame."""
    conn.sendall(encode(message))


def expect(conn: Conn, kind: type[M]) -> M:
    """The next frame, which must be a `kind` (a cancel becomes a DataError)."""
    message = read_frame(conn)
    if isinstance(message, FileCancel):
        raise DataError(f"peer stopped: {message.reason or 'cancelled'}", resumable=False)
    if not isinstance(message, kind):
        raise ProtocolError(f"expected {kind.T!r}, got {message.T!r}")
    return message


class Throttle:
    """Calls `fn(done)` at most every PROGRESS_EVERY_S."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn
        self.last = 0.0

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.fn(done)


class Offset:
    """Progress of one file reported as progress of the whole transfer."""

    def __init__(self, throttle: Throttle, base: int) -> None:
        self.throttle = throttle
        self.base = base

    def __call__(self, n: int) -> None:
        self.throttle(self.base + n)


def classify(exc: BaseException) -> DataError:
    """Any failure of a stream as a DataError with a reason people can act on."""
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
