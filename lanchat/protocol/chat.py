"""The chat session's messages: handshake (hello, auth, welcome, refused), chat, ack,
ping, pong, nick, bye."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lanchat.protocol.base import (
    _ID_RE,
    MAX_ACK_IDS,
    MAX_ID_CHARS,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
    PROTOCOL_VERSION,
    Message,
    ProtocolError,
    _float,
    _ident,
    _int,
    _nick,
    _str,
)


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
