"""Foreign peer kinds: LocalSend (`localsend/`) and Bonjour chat, XEP-0174 (`xmpp/`).

Each kind is a node extension that feeds the peer table with peers of its kind and gives
the node sessions of its kind behind the one session interface (lanchat/api.py). A foreign
peer gets a node id like any other, derived from what identifies it in its own protocol.
"""

from __future__ import annotations

import base64
import hashlib


def foreign_id(kind: str, *parts: str) -> str:
    """A node id (52 base32 characters) for a foreign peer, from what identifies it."""
    material = "\0".join((f"lanchat-{kind}-v1", *parts)).encode("utf-8", "surrogatepass")
    return base64.b32encode(hashlib.sha256(material).digest()).decode().lower().rstrip("=")
