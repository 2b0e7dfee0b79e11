"""Sans-IO wire format: frames, message types, limits, session states and heartbeat rules.

Nothing here touches sockets, threads or clocks: bytes go in, messages come out; messages
go in, bytes come out. Peer faults raise `ProtocolError(reason)`. The parts: `base` (limits,
the error, field checks, `Message`), `chat` (the session's messages), `files` (file
transfer messages), `framing` (encode, decode, `FrameDecoder`), `states` (`ALLOWED`,
`TRANSITIONS`, `register_message`, `Heartbeat`). Import from `lanchat.protocol`.

`base` loads with the package; the other parts load at the first use of one of their names
(module `__getattr__`, PEP 562): creating their dataclasses costs ~10 ms, and the command
line and the shell's prompt, drawn before the node loads, read only limits.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lanchat.protocol.base import (
    HANDSHAKE_TIMEOUT_S,
    HEADER,
    MAX_ACK_IDS,
    MAX_FILE_BYTES,
    MAX_FILES_PER_OFFER,
    MAX_FRAME_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
    MAX_WIRE_NICK_CHARS,
    PROTOCOL_VERSION,
    SESSION_DEAD_AFTER_S,
    SESSION_PING_AFTER_S,
    Message,
    ProtocolError,
    read_float,
    read_ident,
    read_int,
    read_nick,
    read_str,
)

if TYPE_CHECKING:  # at run time: `__getattr__` below
    from lanchat.protocol.chat import (
        MAX_SLOW_DOWN_S,
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
        FILE_HASHES,
        HASH_NAMES,
        MAX_OFFER_HASHES,
        MAX_PENDING_OFFERS,
        SHA256,
        FileAnswer,
        FileCancel,
        FileDone,
        FileEnd,
        FileEntry,
        FileOffer,
        FileRequest,
        FileStart,
    )
    from lanchat.protocol.framing import (
        MESSAGE_TYPES,
        FrameDecoder,
        decode_payload,
        encode,
    )
    from lanchat.protocol.states import (
        ALLOWED,
        DURABLE_TYPES,
        TRANSITIONS,
        Change,
        Heartbeat,
        SessionState,
        check_allowed,
        is_durable,
        register_message,
        transition,
    )

LAZY_PARTS = ("chat", "files", "framing", "states")

__all__ = [
    "read_float",
    "read_ident",
    "read_int",
    "read_nick",
    "read_str",
    "ALLOWED",
    "Ack",
    "Auth",
    "Bye",
    "Change",
    "Chat",
    "DURABLE_TYPES",
    "FILE_HASHES",
    "FileAnswer",
    "FileCancel",
    "FileDone",
    "FileEnd",
    "FileEntry",
    "FileOffer",
    "FileRequest",
    "FileStart",
    "FrameDecoder",
    "HANDSHAKE_TIMEOUT_S",
    "HASH_NAMES",
    "HEADER",
    "Heartbeat",
    "Hello",
    "MAX_ACK_IDS",
    "MAX_FILES_PER_OFFER",
    "MAX_FILE_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "MAX_OFFER_HASHES",
    "MAX_PATH_CHARS",
    "MAX_PENDING_OFFERS",
    "MAX_REASON_CHARS",
    "MAX_SLOW_DOWN_S",
    "MAX_TEXT_CHARS",
    "MAX_WIRE_NICK_CHARS",
    "MESSAGE_TYPES",
    "Message",
    "NickChange",
    "PROTOCOL_VERSION",
    "Ping",
    "Pong",
    "ProtocolError",
    "Refused",
    "SESSION_DEAD_AFTER_S",
    "SESSION_PING_AFTER_S",
    "SHA256",
    "SessionState",
    "SlowDown",
    "TRANSITIONS",
    "Welcome",
    "check_allowed",
    "decode_payload",
    "encode",
    "is_durable",
    "register_message",
    "transition",
]


def __getattr__(name: str) -> Any:
    """A name of a part not loaded yet: load the parts (framing and states import chat and
    files themselves) and keep the name here."""
    if name in __all__:
        for part in LAZY_PARTS:
            module = importlib.import_module(f"{__name__}.{part}")
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
