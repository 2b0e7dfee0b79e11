"""Sans-IO wire format: frames, message types, limits, session states and heartbeat rules.

Nothing here touches sockets, threads or clocks: bytes go in, messages come out; messages
go in, bytes come out. Peer faults raise `ProtocolError(reason)`.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 1024
MAX_WIRE_NICK_CHARS = 256  # a bound for buffering; the nick rule is lanchat/nicks.py
MAX_TEXT_CHARS = 16 * 1024
MAX_ID_CHARS = 64
MAX_ACK_IDS = 4096
MAX_REASON_CHARS = 256
MAX_NAME_CHARS = 255
MAX_PATH_CHARS = 1024
MAX_FILE_BYTES = 1 << 44
MAX_FILES_PER_OFFER = 10_000
SESSION_PING_AFTER_S = 5.0  # a session silent this long on our side sends a ping
SESSION_DEAD_AFTER_S = 15.0  # a session that heard nothing this long is closed (timeout)
HANDSHAKE_TIMEOUT_S = 5.0  # TLS plus the key proof must finish within this

_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProtocolError(Exception):
    """The peer sent something that breaks the protocol; `reason` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _str(d: dict[str, Any], key: str, limit: int, *, empty: bool = False) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} must be a string")
    if len(value) > limit:
        raise ProtocolError(f"field {key!r} longer than {limit} characters")
    if not empty and not value:
        raise ProtocolError(f"field {key!r} is empty")
    if not value.isascii():
        value = _whole(value)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, every surrogate is a lone one


def _whole(value: str) -> str:
    """`value` with lone surrogates (a JSON escape like \\ud800, which no UTF-8 text can
    hold) replaced by U+FFFD, so nothing downstream (SQLite, a terminal, --json) fails."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def _int(d: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} must be an integer in {lo}..{hi}")
    return value


def _float(d: dict[str, Any], key: str) -> float:
    value = d.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise ProtocolError(f"field {key!r} must be a number")
    return float(value)


def _ident(d: dict[str, Any], key: str) -> str:
    value = _str(d, key, MAX_ID_CHARS)
    if not _ID_RE.match(value):
        raise ProtocolError(f"field {key!r} is not a valid id")
    return value


def _nick(d: dict[str, Any]) -> str:
    """A peer's nick as sent: bounded here, judged by `lanchat.nicks` once the id is known
    (a bad nick is replaced there, not a reason to drop the session)."""
    return _str(d, "nick", MAX_WIRE_NICK_CHARS, empty=True)


# Field readers for frames that capabilities register (see `register_message`).
read_str, read_int, read_float, read_ident, read_nick = _str, _int, _float, _ident, _nick


class Message:
    """Base of every wire message; subclasses are frozen dataclasses with a type tag `T`."""

    T: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        raise NotImplementedError


@dataclass(frozen=True)
class Hello(Message):
    """Server to client, first frame: who the server is and a nonce to sign."""

    T: ClassVar[str] = "hello"
    node_id: str
    nick: str
    nonce: str
    version: int = PROTOCOL_VERSION
    instance: str = ""  # changes at each start: tells a restart from a stale session

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.version, "id": self.node_id, "nick": self.nick, "nonce": self.nonce,
                "inst": self.instance}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hello:
        return cls(_ident(d, "id"), _nick(d),
                   _str(d, "nonce", 128), _int(d, "v", 0, 1 << 16),
                   _str(d, "inst", MAX_ID_CHARS, empty=True) if "inst" in d else "")


@dataclass(frozen=True)
class Auth(Message):
    """Client to server: the client's key and its signature over nonce and server id."""

    T: ClassVar[str] = "auth"
    node_id: str
    nick: str
    key: str
    sig: str
    port: int
    version: int = PROTOCOL_VERSION
    instance: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.version, "id": self.node_id, "nick": self.nick, "key": self.key,
                "sig": self.sig, "port": self.port, "inst": self.instance}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Auth:
        return cls(_ident(d, "id"), _nick(d),
                   _str(d, "key", 1024), _str(d, "sig", 1024), _int(d, "port", 0, 65535),
                   _int(d, "v", 0, 1 << 16),
                   _str(d, "inst", MAX_ID_CHARS, empty=True) if "inst" in d else "")


@dataclass(frozen=True)
class Welcome(Message):
    """Server to client: the client's proof was accepted."""

    T: ClassVar[str] = "welcome"

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Welcome:
        return cls()


@dataclass(frozen=True)
class Refused(Message):
    """Either side: the session is refused, with a reason for the user."""

    T: ClassVar[str] = "refused"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Refused:
        return cls(_str(d, "reason", MAX_REASON_CHARS))


@dataclass(frozen=True)
class Chat(Message):
    """A chat message; the sender is the authenticated peer of the session, never a field
    (`nick` travels for older peers and is never read on receipt)."""

    T: ClassVar[str] = "msg"
    msg_id: str
    ts: float
    text: str
    broadcast: bool = False
    nick: str = ""

    def __post_init__(self) -> None:
        if len(self.text) > MAX_TEXT_CHARS:
            raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.msg_id, "ts": self.ts, "text": self.text,
                "to": "broadcast" if self.broadcast else "direct", "nick": self.nick}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chat:
        to = d.get("to")
        if to not in ("direct", "broadcast"):
            raise ProtocolError("field 'to' must be 'direct' or 'broadcast'")
        return cls(_ident(d, "id"), _float(d, "ts"), _str(d, "text", MAX_TEXT_CHARS, empty=True),
                   to == "broadcast", _nick(d))


@dataclass(frozen=True)
class Ack(Message):
    """Receiver to sender: these message ids are stored durably."""

    T: ClassVar[str] = "ack"
    ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ack:
        ids = d.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_ACK_IDS:
            raise ProtocolError(f"field 'ids' must be a list of at most {MAX_ACK_IDS} ids")
        out = []
        for value in ids:
            if not isinstance(value, str) or not _ID_RE.match(value):
                raise ProtocolError("field 'ids' holds an invalid id")
            out.append(value)
        return cls(tuple(out))


@dataclass(frozen=True)
class Ping(Message):
    """Heartbeat request."""

    T: ClassVar[str] = "ping"

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ping:
        return cls()


@dataclass(frozen=True)
class Pong(Message):
    """Heartbeat answer."""

    T: ClassVar[str] = "pong"

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pong:
        return cls()


@dataclass(frozen=True)
class NickChange(Message):
    """The sender now goes by a new nick."""

    T: ClassVar[str] = "nick"
    nick: str

    def to_dict(self) -> dict[str, Any]:
        return {"nick": self.nick}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NickChange:
        return cls(_nick(d))


@dataclass(frozen=True)
class Bye(Message):
    """Clean close: the sender is going away (reason is informative)."""

    T: ClassVar[str] = "bye"
    reason: str = "quit"

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bye:
        return cls(_str(d, "reason", MAX_REASON_CHARS, empty=True))


MAX_SLOW_DOWN_S = 3600.0


@dataclass(frozen=True)
class SlowDown(Message):
    """Receiver to sender: chat messages after the last ack were not stored (a stranger
    over its budget, a full store); keep them and send them again in `retry_after` s."""

    T: ClassVar[str] = "slow_down"
    retry_after: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlowDown:
        wait = _float(d, "retry_after")
        if not 0 <= wait <= MAX_SLOW_DOWN_S:
            raise ProtocolError(f"field 'retry_after' must be in 0..{MAX_SLOW_DOWN_S:g}")
        return cls(wait, _str(d, "reason", MAX_REASON_CHARS, empty=True))


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


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.T: cls
    for cls in (Hello, Auth, Welcome, Refused, Chat, Ack, Ping, Pong, NickChange, Bye, SlowDown,
                FileOffer, FileAnswer, FileCancel, FileRequest, FileStart, FileEnd,
                FileDone)
}


def encode(message: Message) -> bytes:
    """Return the frame (length prefix and JSON payload) for one message."""
    body = message.to_dict()
    body["t"] = message.T
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"message larger than {MAX_FRAME_BYTES} bytes")
    return HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> Message:
    """Parse one frame payload into a message, or raise ProtocolError."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("payload is not a JSON object")
    kind = body.get("t")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {str(kind)[:32]!r}")
    return cls.from_dict(body)


class FrameDecoder:
    """Feed bytes in any split; take whole messages out. Limits are checked before buffering."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes and return every message now complete; raise ProtocolError on a bad frame."""
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 4:
                (length,) = HEADER.unpack_from(buf, pos)
                if length == 0 or length > self._max:
                    raise ProtocolError(f"frame length {length} outside 1..{self._max}")
                if end - pos - 4 < length:
                    break
                out.append(decode_payload(bytes(buf[pos + 4:pos + 4 + length])))
                pos += 4 + length
        finally:
            del buf[:pos]
        return out

    def at_eof(self) -> None:
        """Raise ProtocolError if the stream ended inside a frame."""
        if self._buf:
            raise ProtocolError(f"connection closed inside a frame ({len(self._buf)} bytes)")


class SessionState(enum.Enum):
    """Life of one session."""

    HANDSHAKE = "handshake"
    READY = "ready"
    CLOSING = "closing"
    CLOSED = "closed"


_SERVER_HANDSHAKE = (Auth, Refused)
_CLIENT_HANDSHAKE = (Hello, Welcome, Refused)
_READY = (Chat, Ack, Ping, Pong, NickChange, Bye, Refused, SlowDown, FileOffer, FileAnswer,
          FileCancel)

# Which messages each state accepts, per role: the one transition table.
ALLOWED: dict[tuple[SessionState, bool], tuple[type[Message], ...]] = {
    (SessionState.HANDSHAKE, True): _SERVER_HANDSHAKE,
    (SessionState.HANDSHAKE, False): _CLIENT_HANDSHAKE,
    (SessionState.READY, True): _READY,
    (SessionState.READY, False): _READY,
    (SessionState.CLOSING, True): (Bye, Ack, Pong, Ping, Chat),
    (SessionState.CLOSING, False): (Bye, Ack, Pong, Ping, Chat),
    (SessionState.CLOSED, True): (),
    (SessionState.CLOSED, False): (),
}


# Frames stored and acked by the group commit (the outbox path), as opposed to control.
DURABLE_TYPES: set[type[Message]] = {Chat}


def register_message(cls: type[Message], *, durable: bool = False) -> None:
    """Add a capability's message type (e.g. rooms) to the decoder and the ready states.

    A durable type has a `msg_id` and travels like `Chat`: through the outbox, stored in
    the group commit, acked. Registering the same class twice is a no-op."""
    existing = MESSAGE_TYPES.get(cls.T)
    if existing is cls:
        return
    if existing is not None or not cls.T:
        raise ValueError(f"message type {cls.T!r} is already taken")
    MESSAGE_TYPES[cls.T] = cls
    states = [SessionState.READY] + ([SessionState.CLOSING] if durable else [])
    for state in states:
        for server in (True, False):
            ALLOWED[(state, server)] = (*ALLOWED[(state, server)], cls)
    if durable:
        DURABLE_TYPES.add(cls)


def is_durable(message: Message) -> bool:
    """True for a message that goes through the outbox, the group commit and acks."""
    return type(message) in DURABLE_TYPES


class Change(enum.Enum):
    """What moves a session from one state to another."""

    HANDSHAKE_DONE = "handshake_done"  # server: the client's proof holds; client: welcome
    LOCAL_CLOSE = "local_close"  # we say bye (quit, duplicate, forgotten)
    PEER_BYE = "peer_bye"  # the peer said bye
    FAULT = "fault"  # a protocol error, a refusal either way, a check that failed
    TIMEOUT = "timeout"  # handshake not finished, or the peer went silent
    LOST = "lost"  # the connection is gone


_OPEN = (SessionState.HANDSHAKE, SessionState.READY)
_ANY = (*_OPEN, SessionState.CLOSING)

# Every state change a session may make: (from, change) -> to. The one transition table,
# beside ALLOWED (which messages each state accepts); `transition` is the only way to move.
TRANSITIONS: dict[tuple[SessionState, Change], SessionState] = {
    (SessionState.HANDSHAKE, Change.HANDSHAKE_DONE): SessionState.READY,
    **{(s, Change.LOCAL_CLOSE): SessionState.CLOSING for s in _OPEN},
    **{(s, Change.PEER_BYE): SessionState.CLOSING for s in _OPEN},
    **{(s, Change.FAULT): SessionState.CLOSING for s in _ANY},
    **{(s, Change.TIMEOUT): SessionState.CLOSING for s in _ANY},
    **{(s, Change.LOST): SessionState.CLOSED for s in _ANY},
}


def transition(state: SessionState, change: Change) -> SessionState:
    """The state after `change`; ProtocolError if the table has no such move."""
    after = TRANSITIONS.get((state, change))
    if after is None:
        raise ProtocolError(f"no session change {change.value!r} from state {state.value}")
    return after


def check_allowed(state: SessionState, server: bool, message: Message) -> None:
    """Raise ProtocolError if `message` may not arrive in `state`."""
    if not isinstance(message, ALLOWED[(state, server)]):
        raise ProtocolError(f"unexpected {message.T!r} in state {state.value}")


class Heartbeat:
    """Decides when to ping and when a silent peer is dead; the caller passes `now`."""

    def __init__(self, now: float, interval: float = SESSION_PING_AFTER_S,
                 dead_after: float = SESSION_DEAD_AFTER_S) -> None:
        self.interval = interval
        self.dead_after = dead_after
        self.last_rx = now
        self.last_tx = now
        self.last_ping = now

    def received(self, now: float) -> None:
        """Record that bytes arrived."""
        self.last_rx = now

    def sent(self, now: float) -> None:
        """Record that bytes were sent."""
        self.last_tx = now

    def poll(self, now: float) -> str | None:
        """Return 'dead', 'ping' or None for what to do now; 'ping' means one is sent now."""
        if now - self.last_rx >= self.dead_after:
            return "dead"
        idle = now - min(self.last_rx, self.last_tx)
        if idle >= self.interval and now - self.last_ping >= self.interval:
            self.last_ping = now
            return "ping"
        return None

    def next_deadline(self, now: float) -> float:
        """Return when `poll` should next be called."""
        ping_at = max(min(self.last_rx, self.last_tx), self.last_ping) + self.interval
        return max(min(self.last_rx + self.dead_after, ping_at), now + 0.05)
