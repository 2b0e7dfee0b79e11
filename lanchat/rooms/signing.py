"""Author signatures on room frames: what is signed (with a domain prefix per kind) and
the check that a copy carries its author's key and a signature by it.

The node id is the SHA-256 of the key, so a copy names its author by id and carries the
key: a receiver checks the key against the id and the signature against the key, and
never takes the relaying session's word for who wrote it.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from threading import Lock
from typing import TYPE_CHECKING

from lanchat.identity import node_id_from_spki

if TYPE_CHECKING:  # cryptography loads when a room frame is first checked (identity.py)
    from cryptography.hazmat.primitives.asymmetric import ed25519

KEY_CACHE_SIZE = 4096  # parsed author keys kept (parsing costs more than verifying)

MSG_CONTEXT = b"lanchat-room-msg-v1"
MEMBER_CONTEXT = b"lanchat-room-member-v1"
ROSTER_CONTEXT = b"lanchat-room-roster-v1"
TOPIC_CONTEXT = b"lanchat-room-topic-v1"

_keys: OrderedDict[str, tuple[str, ed25519.Ed25519PublicKey] | None] = OrderedDict()
_keys_lock = Lock()


def payload(context: bytes, *fields: str | int | bool) -> bytes:
    """The bytes signed for one frame: the context, then the fields, NUL-separated.

    Every field but the last is NUL-free by its frame's checks (ids, names, numbers), so
    the encoding is unambiguous; free text goes last."""
    parts = [context]
    for f in fields:
        parts.append(str(int(f) if isinstance(f, bool) else f).encode())
    return b"\0".join(parts)


def _load(key_b64: str) -> tuple[str, ed25519.Ed25519PublicKey] | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with _keys_lock:
        if key_b64 in _keys:
            _keys.move_to_end(key_b64)
            return _keys[key_b64]
    try:
        spki = base64.b64decode(key_b64, validate=True)
        key = serialization.load_der_public_key(spki)
        loaded = (node_id_from_spki(spki), key) if isinstance(
            key, ed25519.Ed25519PublicKey) else None
    except (ValueError, TypeError):
        loaded = None
    with _keys_lock:
        _keys[key_b64] = loaded
        while len(_keys) > KEY_CACHE_SIZE:
            _keys.popitem(last=False)
    return loaded


def is_key_of(author: str, key_b64: str) -> bool:
    """True if `key_b64` is an Ed25519 key whose hash is `author`'s id."""
    loaded = _load(key_b64)
    return loaded is not None and loaded[0] == author


def verify(author: str, key_b64: str, sig_b64: str, signed: bytes) -> bool:
    """True if `key_b64` is `author`'s key (its id is the key's hash) and `sig_b64` is its
    signature over `signed`."""
    from cryptography.exceptions import InvalidSignature

    loaded = _load(key_b64)
    if loaded is None or loaded[0] != author:
        return False
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        loaded[1].verify(sig, signed)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
