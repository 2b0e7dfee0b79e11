"""Room frames (sans-IO): messages signed by their authors, signed membership statements,
the creator's signed member list of a private room, topics, and catch-up requests.

`register()` adds them to the session decoder; `room_msg` is durable (outbox, group
commit, acks, like a direct message), the others are control frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from lanchat.protocol import (
    MAX_TEXT_CHARS,
    Message,
    ProtocolError,
    read_ident,
    read_int,
    read_nick,
    read_str,
    register_message,
)
from lanchat.rooms import signing
from lanchat.rooms.names import check_room, room_id

MAX_ROOM_MEMBERS = 256
MAX_TOPIC_CHARS = 512
MAX_SYNC_AUTHORS = 1024
MAX_KEY_CHARS = 128
MAX_SIG_CHARS = 128
MAX_SEQ = (1 << 53) - 1
KINDS = ("open", "private")

Signer = Callable[[bytes], str]


def _room(d: dict[str, Any]) -> str:
    raw = read_str(d, "room", 128)
    try:
        room = check_room(raw)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    if room != raw:
        raise ProtocolError("field 'room' is not in canonical form")
    return room


def _creator(d: dict[str, Any]) -> str:
    """A private room's creator (its id is part of the room's), '' for an open room."""
    if d.get("creator") is None:
        return ""
    return read_ident(d, "creator")


def _with_creator(out: dict[str, Any], creator: str) -> dict[str, Any]:
    if creator:
        out["creator"] = creator
    return out


def _nick(d: dict[str, Any]) -> str:
    """The signer's nick as signed (bounded); shown only through `nicks.clean_received_nick`.

    NUL separates signed fields (`signing.payload`) and free text follows the nick, so a
    nick with a NUL would let a relayer move signed bytes between nick and text."""
    nick = read_nick(d)
    if "\0" in nick:
        raise ProtocolError("field 'nick' contains NUL")
    return nick


def _bool(d: dict[str, Any], key: str) -> bool:
    value = d.get(key)
    if not isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be a boolean")
    return value


@dataclass(frozen=True)
class RoomMsg(Message):
    """One room message, signed by its author; any member may carry a copy."""

    T: ClassVar[str] = "room_msg"
    room: str
    msg_id: str
    author: str
    key: str
    seq: int  # the author's sequence in this room, from 1: its order
    ts: int  # milliseconds since the epoch, the author's clock
    nick: str
    text: str
    sig: str = ""
    creator: str = ""  # a private room's creator: the room is (room, creator)

    @property
    def rid(self) -> str:
        """The room's id (names.room_id)."""
        return room_id(self.room, self.creator)

    def __post_init__(self) -> None:
        if len(self.text) > MAX_TEXT_CHARS:
            raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")

    def signed(self) -> bytes:
        """The bytes its author signs."""
        return signing.payload(signing.MSG_CONTEXT, self.rid, self.msg_id, self.author,
                               self.seq, self.ts, self.nick, self.text)

    def verified(self) -> bool:
        """True if the author's key and signature check out."""
        return signing.verify(self.author, self.key, self.sig, self.signed())

    def to_dict(self) -> dict[str, Any]:
        return _with_creator(
            {"room": self.room, "id": self.msg_id, "author": self.author, "key": self.key,
             "seq": self.seq, "ts": self.ts, "nick": self.nick, "text": self.text,
             "sig": self.sig}, self.creator)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoomMsg:
        return cls(_room(d), read_ident(d, "id"), read_ident(d, "author"),
                   read_str(d, "key", MAX_KEY_CHARS), read_int(d, "seq", 1, MAX_SEQ),
                   read_int(d, "ts", 0, MAX_SEQ), _nick(d),
                   read_str(d, "text", MAX_TEXT_CHARS), read_str(d, "sig", MAX_SIG_CHARS),
                   _creator(d))


@dataclass(frozen=True)
class RoomMember(Message):
    """A member's own signed word that it is in (or has left) a room; the higher `ver` wins."""

    T: ClassVar[str] = "room_member"
    room: str
    member: str
    key: str
    kind: str
    joined: bool
    ver: int
    nick: str
    sig: str = ""
    creator: str = ""  # a private room's creator

    @property
    def rid(self) -> str:
        """The room's id (names.room_id)."""
        return room_id(self.room, self.creator)

    def signed(self) -> bytes:
        """The bytes the member signs."""
        return signing.payload(signing.MEMBER_CONTEXT, self.rid, self.member, self.kind,
                               self.joined, self.ver, self.nick)

    def verified(self) -> bool:
        """True if signed by the member's own key."""
        return signing.verify(self.member, self.key, self.sig, self.signed())

    def to_dict(self) -> dict[str, Any]:
        return _with_creator(
            {"room": self.room, "member": self.member, "key": self.key, "kind": self.kind,
             "joined": self.joined, "ver": self.ver, "nick": self.nick, "sig": self.sig},
            self.creator)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoomMember:
        kind = d.get("kind")
        if kind not in KINDS:
            raise ProtocolError("field 'kind' must be 'open' or 'private'")
        creator = _creator(d)
        if bool(creator) != (kind == "private"):
            raise ProtocolError("a private room's statement names its creator; an open "
                                "room's does not")
        return cls(_room(d), read_ident(d, "member"), read_str(d, "key", MAX_KEY_CHARS),
                   str(kind), _bool(d, "joined"), read_int(d, "ver", 0, MAX_SEQ), _nick(d),
                   read_str(d, "sig", MAX_SIG_CHARS), creator)


@dataclass(frozen=True)
class RoomRoster(Message):
    """A private room's member list, versioned and signed by the room's creator."""

    T: ClassVar[str] = "room_roster"
    room: str
    creator: str
    key: str
    ver: int
    members: tuple[str, ...]
    sig: str = ""

    @property
    def rid(self) -> str:
        """The room's id (names.room_id)."""
        return room_id(self.room, self.creator)

    def signed(self) -> bytes:
        """The bytes the creator signs."""
        return signing.payload(signing.ROSTER_CONTEXT, self.room, self.creator, self.ver,
                               ",".join(sorted(self.members)))

    def verified(self) -> bool:
        """True if signed by the creator's key."""
        return signing.verify(self.creator, self.key, self.sig, self.signed())

    def to_dict(self) -> dict[str, Any]:
        return {"room": self.room, "creator": self.creator, "key": self.key, "ver": self.ver,
                "members": list(self.members), "sig": self.sig}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoomRoster:
        raw = d.get("members")
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_ROOM_MEMBERS:
            raise ProtocolError(f"field 'members' must list 1-{MAX_ROOM_MEMBERS} ids")
        members = tuple(read_ident({"m": m}, "m") for m in raw)
        if len(set(members)) != len(members):
            raise ProtocolError("field 'members' repeats an id")
        return cls(_room(d), read_ident(d, "creator"), read_str(d, "key", MAX_KEY_CHARS),
                   read_int(d, "ver", 0, MAX_SEQ), members, read_str(d, "sig", MAX_SIG_CHARS))


@dataclass(frozen=True)
class RoomTopic(Message):
    """A room's topic, signed by the member who set it; the higher (ver, by) wins."""

    T: ClassVar[str] = "room_topic"
    room: str
    by: str
    key: str
    ver: int
    nick: str
    topic: str
    sig: str = ""
    creator: str = ""  # a private room's creator

    @property
    def rid(self) -> str:
        """The room's id (names.room_id)."""
        return room_id(self.room, self.creator)

    def signed(self) -> bytes:
        """The bytes the setter signs."""
        return signing.payload(signing.TOPIC_CONTEXT, self.rid, self.by, self.ver, self.nick,
                               self.topic)

    def verified(self) -> bool:
        """True if signed by the setter's key."""
        return signing.verify(self.by, self.key, self.sig, self.signed())

    def to_dict(self) -> dict[str, Any]:
        return _with_creator(
            {"room": self.room, "by": self.by, "key": self.key, "ver": self.ver,
             "nick": self.nick, "topic": self.topic, "sig": self.sig}, self.creator)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoomTopic:
        return cls(_room(d), read_ident(d, "by"), read_str(d, "key", MAX_KEY_CHARS),
                   read_int(d, "ver", 0, MAX_SEQ), _nick(d),
                   read_str(d, "topic", MAX_TOPIC_CHARS, empty=True),
                   read_str(d, "sig", MAX_SIG_CHARS), _creator(d))


@dataclass(frozen=True)
class RoomSync(Message):
    """Catch-up request: what the sender has of a room, per author (its contiguous high
    mark); the receiver sends what is missing, within its window. `authors` limits the
    answer to those authors (None: every author)."""

    T: ClassVar[str] = "room_sync"
    room: str
    heads: tuple[tuple[str, int], ...]
    authors: tuple[str, ...] | None = None
    creator: str = ""  # a private room's creator

    @property
    def rid(self) -> str:
        """The room's id (names.room_id)."""
        return room_id(self.room, self.creator)

    def to_dict(self) -> dict[str, Any]:
        return _with_creator(
            {"room": self.room, "heads": dict(self.heads),
             "authors": None if self.authors is None else list(self.authors)}, self.creator)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoomSync:
        raw = d.get("heads")
        if not isinstance(raw, dict) or len(raw) > MAX_SYNC_AUTHORS:
            raise ProtocolError(f"field 'heads' must map at most {MAX_SYNC_AUTHORS} authors")
        heads = tuple((read_ident({"a": a}, "a"), read_int(raw, a, 0, MAX_SEQ)) for a in raw)
        authors_raw = d.get("authors")
        authors: tuple[str, ...] | None = None
        if authors_raw is not None:
            if not isinstance(authors_raw, list) or len(authors_raw) > MAX_SYNC_AUTHORS:
                raise ProtocolError("field 'authors' must be null or a list of ids")
            authors = tuple(read_ident({"a": a}, "a") for a in authors_raw)
        return cls(_room(d), heads, authors, _creator(d))


F = TypeVar("F", RoomMsg, RoomMember, RoomRoster, RoomTopic)
CONTROL_TYPES: tuple[type[Message], ...] = (RoomMember, RoomRoster, RoomTopic, RoomSync)


def register() -> None:
    """Teach the session decoder the room frames (idempotent)."""
    register_message(RoomMsg, durable=True)
    for cls in CONTROL_TYPES:
        register_message(cls)


def sign(frame: F, signer: Signer) -> F:
    """Return `frame` with its signer's signature."""
    return replace(frame, sig=signer(frame.signed()))
