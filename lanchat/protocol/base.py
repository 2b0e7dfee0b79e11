"""The wire format's limits, its error, the field checks every message uses, and `Message`."""

from __future__ import annotations

import re
import struct
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
