"""The peer table: one entry per node id, merged from mDNS, beacons, static peers and sessions.

No I/O and no clock: callers pass `now`. Each change returns what the node should announce.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from lanchat import naming

R = TypeVar("R")

SOURCES = ("mdns", "beacon", "static", "session", "localsend", "xmpp")
MAX_ADDRESSES = 8
# An address last heard this much before the peer's freshest one missed a beacon round
# (rounds come every 1.2-1.8 s on all of a peer's interfaces at once): its link is likely
# down, so it is dialled after the others.
MISSED_ROUND_S = 1.0
# Peer kinds: lanchat's own nodes and the foreign messengers reached through a session of
# their kind (lanchat/interop/). The node id of a foreign peer is derived from what
# identifies it there (a LocalSend certificate, an XEP-0174 instance name and address).
KINDS = ("lanchat", "localsend", "xmpp")
ENCRYPTED_KINDS = ("lanchat", "localsend")  # XEP-0174 streams are plain TCP, unauthenticated
_VIA = {"session": "static", "xmpp": "mdns", "localsend": "beacon"}


@dataclass
class Peer:
    """What this node knows of one other node."""

    id: str
    nick: str
    number: int
    first_seen: float
    last_seen: float
    host: str = ""
    port: int = 0
    addresses: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    heard: dict[str, float] = field(default_factory=dict)  # address -> when last heard
    sources: dict[str, float] = field(default_factory=dict)
    online: bool = False
    left_reason: str = ""
    conflict: str = ""
    kind: str = "lanchat"
    fingerprint: str = ""  # a foreign peer's own fingerprint (LocalSend: its certificate's)

    @property
    def via(self) -> list[str]:
        """Where this peer was heard, in contract order (sessions count as 'static', an
        XEP-0174 presence as 'mdns', a LocalSend multicast announce as 'beacon')."""
        names = {_VIA.get(s, s) for s in self.sources}
        return [s for s in ("mdns", "beacon", "static") if s in names]

    def public(self) -> dict[str, Any]:
        """The `peer` object of the headless contract."""
        view = {"id": self.id, "nick": self.nick, "host": self.host,
                "addresses": list(self.addresses), "port": self.port, "via": self.via,
                "online": self.online, "number": self.number, "kind": self.kind,
                "encrypted": self.kind in ENCRYPTED_KINDS}
        if self.fingerprint:
            view["fingerprint"] = self.fingerprint
        return view


@dataclass(frozen=True)
class Change:
    """What a table update means for the user: 'joined', 'updated' or 'left'."""

    kind: str
    peer: Peer
    reason: str = ""


def _locked(method: Callable[..., R]) -> Callable[..., R]:
    @wraps(method)
    def run(self: PeerTable, *args: Any, **kwargs: Any) -> R:
        with self.lock:
            return method(self, *args, **kwargs)
    return run


class PeerTable:
    """Peers keyed by node id; list numbers are stable for the life of the node.

    The loop thread changes it; any thread may read it (every method takes the lock, and
    callers that read several fields of a Peer hold `lock` themselves).
    """

    def __init__(self, own_id: str) -> None:
        self.own_id = own_id
        self.lock = threading.RLock()
        self._peers: dict[str, Peer] = {}
        self._next_number = 1

    def __len__(self) -> int:
        return len(self._peers)

    @_locked
    def get(self, node_id: str) -> Peer | None:
        """Return the peer with this id, if known."""
        return self._peers.get(node_id)

    @_locked
    def all(self) -> list[Peer]:
        """Every peer, by list number."""
        return sorted(self._peers.values(), key=lambda p: p.number)

    @_locked
    def online(self) -> list[Peer]:
        """Peers online now, by list number."""
        return [p for p in self.all() if p.online]

    def _entry(self, node_id: str, nick: str, now: float) -> tuple[Peer, bool]:
        peer = self._peers.get(node_id)
        if peer is not None:
            return peer, False
        peer = Peer(node_id, nick, self._next_number, now, now)
        self._next_number += 1
        self._peers[node_id] = peer
        return peer, True

    @_locked
    def remember(self, node_id: str, nick: str, host: str, addresses: list[str],
                 port: int, now: float) -> None:
        """Add a known peer from the store, offline, so it can be named and reached."""
        if node_id == self.own_id:
            return
        peer, new = self._entry(node_id, nick, now)
        if new:
            peer.host, peer.port = host, port
            peer.addresses = list(addresses[:MAX_ADDRESSES])

    @_locked
    def seen(self, node_id: str, source: str, now: float, *, nick: str = "", host: str = "",
             address: str = "", port: int = 0, verified: bool = False,
             kind: str = "", fingerprint: str = "") -> Change | None:
        """Record that `source` shows the peer now; return the change, if any.

        An address from discovery goes to the end of the list; one proven by a session
        (`verified`) goes first.
        """
        if node_id == self.own_id or source not in SOURCES:
            return None
        peer, new = self._entry(node_id, nick or "?", now)
        if kind in KINDS and (new or not peer.sources):
            peer.kind = kind
        if fingerprint and kind == peer.kind:  # a foreign kind's own identity (LocalSend)
            peer.fingerprint = fingerprint
        before = (peer.nick, peer.host, peer.port, tuple(peer.addresses), tuple(peer.via))
        # While a session proves who the peer is, discovery (which anyone can forge) may
        # add addresses at the end but not rename the peer or move its port.
        authoritative = source == "session" or "session" not in peer.sources
        peer.sources[source] = now
        peer.last_seen = now
        if nick and authoritative:
            peer.nick = nick
        if host and (authoritative or not peer.host):
            peer.host = host
        if port and authoritative:
            peer.port = port
        if address and port and (verified or address not in peer.ports or authoritative):
            peer.ports[address] = port
        if address:
            peer.heard[address] = now
            if verified:
                if address in peer.addresses:
                    peer.addresses.remove(address)
                peer.addresses.insert(0, address)
            elif address not in peer.addresses:
                peer.addresses.append(address)
            for dropped in peer.addresses[MAX_ADDRESSES:]:
                peer.ports.pop(dropped, None)
                peer.heard.pop(dropped, None)
            del peer.addresses[MAX_ADDRESSES:]
        if not peer.online:
            peer.online = True
            peer.left_reason = ""
            return Change("joined", peer)
        after = (peer.nick, peer.host, peer.port, tuple(peer.addresses), tuple(peer.via))
        if new or before != after:
            return Change("updated", peer)
        return None

    @_locked
    def lost(self, node_id: str, source: str, reason: str, now: float) -> Change | None:
        """Record that `source` no longer shows the peer; return 'left' if now offline.

        A beacon 'bye' or timeout also ends an mDNS record, which would otherwise linger
        for an hour after a crash.
        """
        peer = self._peers.get(node_id)
        if peer is None or source not in peer.sources:
            return None
        del peer.sources[source]
        if source == "beacon" and "session" not in peer.sources:
            peer.sources.pop("mdns", None)
        if peer.online and not peer.sources:
            peer.online = False
            peer.left_reason = reason
            return Change("left", peer, reason)
        return Change("updated", peer) if peer.online else None

    @_locked
    def dial_order(self, node_id: str) -> list[tuple[str, int]]:
        """(address, port) pairs to try for a peer: proven ones first, but an address that
        missed the peer's latest beacon round (a link that went down) after the others."""
        peer = self._peers.get(node_id)
        if peer is None:
            return []
        freshest = max(peer.heard.values(), default=0.0)
        addresses = sorted(peer.addresses, key=lambda a: freshest - peer.heard.get(a, freshest)
                           > MISSED_ROUND_S)
        pairs = [(a, peer.ports.get(a, peer.port)) for a in addresses]
        return [(a, p) for a, p in pairs if p]

    @_locked
    def stale(self, source: str, older_than: float) -> list[str]:
        """Ids whose `source` was last heard before `older_than`."""
        return [p.id for p in self._peers.values()
                if source in p.sources and p.sources[source] < older_than]

    @_locked
    def prune(self, max_size: int, keep: Callable[[str], bool]) -> int:
        """Drop the longest-offline peers not kept by `keep` until at most `max_size` remain;
        return how many went. Bounds the table against floods of made-up ids."""
        extra = len(self._peers) - max_size
        if extra <= 0:
            return 0
        gone = sorted((p for p in self._peers.values() if not p.online and not keep(p.id)),
                      key=lambda p: p.last_seen)[:extra]
        for peer in gone:
            del self._peers[peer.id]
        return len(gone)

    @_locked
    def forget(self, node_id: str) -> None:
        """Drop a peer from the table."""
        self._peers.pop(node_id, None)

    @_locked
    def resolve(self, ref: str) -> Peer:
        """The one peer `ref` names (lanchat/naming.py); raises LookupError (AmbiguousName
        when several keys go by the name) with a message for the user."""
        return naming.resolve(ref, self._peers.values())
