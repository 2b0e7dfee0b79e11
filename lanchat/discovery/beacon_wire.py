"""The beacon's wire format, and the checks every received datagram passes.

One UTF-8 JSON object per datagram (at most MAX_DATAGRAM bytes),
``{"v":1,"t":"hello"|"hb"|"bye","id":NODE_ID,"nick":..,"host":..,"port":TCP_PORT,
"inst":INSTANCE,"seq":N}``. `inst` is random per start; `seq` grows with every beacon round
(the same round carries the same seq on every interface). Unknown extra keys are ignored;
`"eph":true` marks a one-shot run (answered, not listed).

A datagram is untrusted input: `decode` returns a `BeaconMessage` or raises `Dropped` with
the reason, never anything else.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeGuard

from lanchat.discovery.sighting import Dropped, DropReason
from lanchat.identity import is_node_id
from lanchat.nicks import MAX_WIRE_NICK_CHARS, clean_received_nick, nick_problem
from lanchat.protocol import PROTOCOL_VERSION

MAX_DATAGRAM = 1024  # bytes; larger datagrams are dropped unparsed
HOST_MAX_CHARS = 253
INSTANCE_MAX_CHARS = 64
SEQ_MAX = 2**63 - 1

_INSTANCE_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{INSTANCE_MAX_CHARS}}}")
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class Kind(StrEnum):
    """The `t` field of a beacon."""

    HELLO = "hello"
    HEARTBEAT = "hb"
    BYE = "bye"


@dataclass(frozen=True)
class BeaconMessage:
    """One decoded, checked beacon."""

    kind: Kind
    node_id: str
    nick: str
    host: str
    port: int
    instance: str
    seq: int
    ephemeral: bool = False  # a one-shot run (send, peers, doctor): answered, not listed


def _is_clean_text(value: str) -> bool:
    """True if value has no control, line-separator or bidi-override characters."""
    return not any(
        unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in value
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_nick(nick: object) -> bool:
    """True if nick follows the nick rule (lanchat/nicks.py)."""
    return nick_problem(nick) is None


def valid_host(host: object) -> bool:
    """True if host may travel in a beacon: up to HOST_MAX_CHARS chars, no control chars."""
    return isinstance(host, str) and len(host) <= HOST_MAX_CHARS and _is_clean_text(host)


def decode(data: bytes) -> BeaconMessage:
    """Parse and check one datagram; raise Dropped(reason) if it is not a valid beacon."""
    if len(data) > MAX_DATAGRAM:
        raise Dropped(DropReason.OVERSIZE)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise Dropped(DropReason.NOT_JSON) from None
    if not isinstance(obj, dict):
        raise Dropped(DropReason.MALFORMED)
    version = obj.get("v")
    if not _is_int(version):
        raise Dropped(DropReason.MALFORMED)
    if version != PROTOCOL_VERSION:
        raise Dropped(DropReason.BAD_VERSION)
    kind, node_id, inst, seq = obj.get("t"), obj.get("id"), obj.get("inst"), obj.get("seq")
    nick, host, port = obj.get("nick"), obj.get("host"), obj.get("port")
    if kind not in ("hello", "hb", "bye") or not _is_int(seq) or not 0 <= seq <= SEQ_MAX:
        raise Dropped(DropReason.MALFORMED)
    if not isinstance(node_id, str) or not isinstance(inst, str):
        raise Dropped(DropReason.MALFORMED)
    if not is_node_id(node_id) or not _INSTANCE_RE.fullmatch(inst):
        raise Dropped(DropReason.BAD_ID)
    if not isinstance(nick, str) or len(nick) > MAX_WIRE_NICK_CHARS:
        raise Dropped(DropReason.MALFORMED)
    nick = clean_received_nick(nick, node_id, source="beacon")
    if not valid_host(host):
        raise Dropped(DropReason.BAD_HOST)
    if not _is_int(port) or not 1 <= port <= 65535:
        raise Dropped(DropReason.BAD_PORT)
    assert isinstance(nick, str) and isinstance(host, str) and isinstance(port, int)
    return BeaconMessage(Kind(kind), node_id, nick, host, port, inst, seq,
                         obj.get("eph") is True)


def encode(kind: Kind, *, node_id: str, nick: str, host: str, port: int, instance: str,
           seq: int, ephemeral: bool = False) -> bytes:
    """One beacon datagram."""
    body = {"v": PROTOCOL_VERSION, "t": kind.value, "id": node_id, "nick": nick, "host": host,
            "port": port, "inst": instance, "seq": seq}
    if ephemeral:
        body["eph"] = True
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
