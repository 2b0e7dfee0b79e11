"""File transfer messages: the offer, answer and cancel on the chat session, and the data
connection's request, start, end and done."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lanchat.protocol.base import (
    MAX_FILE_BYTES,
    MAX_FILES_PER_OFFER,
    MAX_PATH_CHARS,
    MAX_REASON_CHARS,
    Message,
    ProtocolError,
    _ident,
    _int,
    _str,
)

MAX_PENDING_OFFERS = 16  # unanswered offers held per peer; more are declined
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
# File digests: SHA-256 is what every peer understands (and what version 1 offers imply);
# BLAKE3 (32-byte output, hex like SHA-256) is used when both ends name it. An offer lists
# the sender's algorithms; the receiver names the one it wants in each `file_request`.
SHA256 = "sha256"
FILE_HASHES = ("blake3", SHA256)
HASH_NAMES = {"sha256": "SHA-256", "blake3": "BLAKE3"}  # as people write them
MAX_OFFER_HASHES = 8  # names kept from an offer's list; unknown names are skipped


def _sha(d: dict[str, Any], key: str, *, null: bool) -> str | None:
    value = d.get(key)
    if value is None and null:
        return None
    if not isinstance(value, str) or not _SHA_RE.match(value):
        raise ProtocolError(f"field {key!r} must be 64 hex digits" + (" or null" if null else ""))
    return value


@dataclass(frozen=True)
class FileEntry:
    """One file of an offer: a relative path (made safe again by the receiver) and size."""

    path: str
    size: int


@dataclass(frozen=True)
class FileOffer(Message):
    """Sender offers files; nothing is written by the receiver before it accepts."""

    T: ClassVar[str] = "file_offer"
    transfer: str
    name: str
    size: int
    sha256: str | None
    files: tuple[FileEntry, ...] = field(default=())
    port: int = 0
    hashes: tuple[str, ...] = ()  # digests the sender can make, best first; () = SHA-256

    def to_dict(self) -> dict[str, Any]:
        d = {"transfer": self.transfer, "name": self.name, "size": self.size,
             "sha256": self.sha256,
             "files": [{"path": f.path, "size": f.size} for f in self.files],
             "port": self.port}
        if self.hashes:
            d["hashes"] = list(self.hashes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileOffer:
        sha = d.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise ProtocolError("field 'sha256' must be 64 hex digits or null")
        raw = d.get("files", [])
        if not isinstance(raw, list) or len(raw) > MAX_FILES_PER_OFFER:
            raise ProtocolError("field 'files' must be a list")
        files = []
        for item in raw:
            if not isinstance(item, dict):
                raise ProtocolError("file entries must be objects")
            files.append(FileEntry(_str(item, "path", MAX_PATH_CHARS),
                                   _int(item, "size", 0, MAX_FILE_BYTES)))
        port = _int(d, "port", 0, 65535) if "port" in d else 0
        hashes = d.get("hashes", [])
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise ProtocolError("field 'hashes' must be a list of names")
        known = tuple(h for h in hashes[:MAX_OFFER_HASHES] if h in FILE_HASHES)
        return cls(_ident(d, "transfer"), _str(d, "name", MAX_PATH_CHARS),
                   _int(d, "size", 0, MAX_FILE_BYTES), sha, tuple(files), port, known)


@dataclass(frozen=True)
class FileAnswer(Message):
    """Receiver to sender: accepted (with the offsets to resume from per file) or declined."""

    T: ClassVar[str] = "file_answer"
    transfer: str
    accept: bool
    offsets: tuple[int, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"transfer": self.transfer, "accept": self.accept,
                "offsets": list(self.offsets), "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileAnswer:
        accept = d.get("accept")
        if not isinstance(accept, bool):
            raise ProtocolError("field 'accept' must be a boolean")
        offsets = d.get("offsets", [])
        if not isinstance(offsets, list) or len(offsets) > MAX_FILES_PER_OFFER or not all(
            isinstance(o, int) and not isinstance(o, bool) and 0 <= o <= MAX_FILE_BYTES
            for o in offsets
        ):
            raise ProtocolError("field 'offsets' must be a list of sizes")
        return cls(_ident(d, "transfer"), accept, tuple(offsets),
                   _str(d, "reason", MAX_REASON_CHARS, empty=True))


@dataclass(frozen=True)
class FileCancel(Message):
    """Either side stops a transfer."""

    T: ClassVar[str] = "file_cancel"
    transfer: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"transfer": self.transfer, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileCancel:
        return cls(_ident(d, "transfer"), _str(d, "reason", MAX_REASON_CHARS, empty=True))


@dataclass(frozen=True)
class FileRequest(Message):
    """Data channel, receiver to sender: send from file `index` at `offset`; `prefix` is the
    digest of the receiver's bytes before `offset` (null at 0), so a changed prefix restarts.
    `hash` names the digest for `prefix`, `file_end` and `file_done` (one the offer listed)."""

    T: ClassVar[str] = "file_request"
    transfer: str
    index: int = 0
    offset: int = 0
    prefix: str | None = None
    hash: str = SHA256

    def __post_init__(self) -> None:
        if self.hash not in FILE_HASHES:
            raise ValueError(f"unknown hash {self.hash!r}")

    def to_dict(self) -> dict[str, Any]:
        d = {"transfer": self.transfer, "index": self.index, "offset": self.offset,
             "prefix": self.prefix}
        if self.hash != SHA256:  # what a version-1 sender assumes anyway
            d["hash"] = self.hash
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileRequest:
        alg = d.get("hash", SHA256)
        if alg not in FILE_HASHES:
            raise ProtocolError(f"field 'hash' must be one of {', '.join(FILE_HASHES)}")
        return cls(_ident(d, "transfer"), _int(d, "index", 0, MAX_FILES_PER_OFFER),
                   _int(d, "offset", 0, MAX_FILE_BYTES), _sha(d, "prefix", null=True), alg)


@dataclass(frozen=True)
class FileStart(Message):
    """Data channel, sender to receiver: raw bytes follow from file `index` at `offset`."""

    T: ClassVar[str] = "file_start"
    transfer: str
    index: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"transfer": self.transfer, "index": self.index, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileStart:
        return cls(_ident(d, "transfer"), _int(d, "index", 0, MAX_FILES_PER_OFFER),
                   _int(d, "offset", 0, MAX_FILE_BYTES))


@dataclass(frozen=True)
class FileEnd(Message):
    """Data channel, sender to receiver, after the bytes of file `index`: its digest (by the
    request's `hash`; the wire key stays "sha256", as version-1 peers read it)."""

    T: ClassVar[str] = "file_end"
    transfer: str
    index: int
    digest: str

    def __post_init__(self) -> None:
        if not _SHA_RE.match(self.digest):
            raise ValueError("digest must be 64 hex digits")

    def to_dict(self) -> dict[str, Any]:
        return {"transfer": self.transfer, "index": self.index, "sha256": self.digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileEnd:
        sha = _sha(d, "sha256", null=False)
        assert sha is not None
        return cls(_ident(d, "transfer"), _int(d, "index", 0, MAX_FILES_PER_OFFER), sha)


@dataclass(frozen=True)
class FileDone(Message):
    """Data channel, receiver to sender: every file is verified and in place; `digest` is
    the file's (or the folder's tree) digest by the request's `hash` (wire key "sha256")."""

    T: ClassVar[str] = "file_done"
    transfer: str
    digest: str

    def __post_init__(self) -> None:
        if not _SHA_RE.match(self.digest):
            raise ValueError("digest must be 64 hex digits")

    def to_dict(self) -> dict[str, Any]:
        return {"transfer": self.transfer, "sha256": self.digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileDone:
        sha = _sha(d, "sha256", null=False)
        assert sha is not None
        return cls(_ident(d, "transfer"), sha)
