"""What every discovery source reports, and why it ignores what it hears: one definition
for the beacon, mDNS and the sources to come (LocalSend, XEP-0174)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Sighting:
    """One peer as heard by a discovery source."""

    node_id: str
    nick: str
    host: str
    address: str  # where it was heard from (the datagram's source, the A record)
    port: int  # the peer's TCP port
    instance: str  # changes at each start of the peer ("" when the source has none)
    via: str  # the source: "beacon", "mdns", ...
    interface: str = ""  # our local interface IP it arrived on


class DropReason(StrEnum):
    """Why a received announcement was ignored (the keys of a source's `dropped` stats)."""

    OVERSIZE = "oversize"  # more than the source's size limit
    OFF_LINK = "off_link"  # source address not in the subnet of the interface it came in on
    RATE_LIMITED = "rate_limited"  # over the source's rate limits
    NOT_JSON = "not_json"  # not UTF-8 JSON
    MALFORMED = "malformed"  # not an object, missing field, wrong type, unknown kind
    BAD_VERSION = "bad_version"  # not protocol.PROTOCOL_VERSION
    MISSING_ID = "missing_id"
    BAD_ID = "bad_id"  # node id or instance id malformed
    MISSING_NICK = "missing_nick"
    BAD_HOST = "bad_host"  # too long or with control characters
    BAD_PORT = "bad_port"  # not 1..65535
    OWN = "own"  # our own announcement looped back
    ID_CLASH = "id_clash"  # our node id with another instance: a copied home or a forgery
    REPLAY = "replay"  # seq not above the last one from that (id, instance, source)
    UNRESOLVED = "unresolved"  # mDNS: no SRV/TXT/A answer in time
    TXT_TOO_BIG = "txt_too_big"
    TXT_NOT_UTF8 = "txt_not_utf8"
    NO_ADDRESS = "no_address"


class Dropped(Exception):
    """An announcement to ignore, and why."""

    def __init__(self, reason: DropReason) -> None:
        super().__init__(reason.value)
        self.reason = reason
