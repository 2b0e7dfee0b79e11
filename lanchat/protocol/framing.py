"""Frames: 4-byte length + UTF-8 JSON; the type registry, encode and decode, and the
incremental decoder that checks limits before buffering."""

from __future__ import annotations

import json

from lanchat.protocol.base import HEADER, MAX_FRAME_BYTES, Message, ProtocolError
from lanchat.protocol.chat import (
    Ack,
    Auth,
    Bye,
    Chat,
    Hello,
    NickChange,
    Ping,
    Pong,
    Refused,
    SlowDown,
    Welcome,
)
from lanchat.protocol.files import (
    FileAnswer,
    FileCancel,
    FileDone,
    FileEnd,
    FileOffer,
    FileRequest,
    FileStart,
)

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.T: cls
    for cls in (Hello, Auth, Welcome, Refused, Chat, Ack, Ping, Pong, NickChange, Bye, SlowDown,
                FileOffer, FileAnswer, FileCancel, FileRequest, FileStart, FileEnd,
                FileDone)
}


# One encoder and decoder for every frame: `json.dumps` with options builds a new encoder
# per call, and `json.loads` of bytes guesses the encoding first (a payload is UTF-8).
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_from_json = json.JSONDecoder().decode


def encode(message: Message) -> bytes:
    """Return the frame (length prefix and JSON payload) for one message."""
    body = message.to_dict()
    body["t"] = message.T
    payload = _to_json(body).encode()
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"message larger than {MAX_FRAME_BYTES} bytes")
    return HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> Message:
    """Parse one frame payload into a message, or raise ProtocolError."""
    try:
        body = _from_json(payload.decode())
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
