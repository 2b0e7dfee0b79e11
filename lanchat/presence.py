"""Who is here: the peer table, what the store remembers of each peer, and the `peer_*`
events a change means.

`Presence` is owned by the loop thread: discovery, sessions and extensions report
sightings to it there; other threads read through `Node.call`. It keeps each known
peer's trust in memory, so a listing of 1,000 peers runs no SQL.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from lanchat import naming
from lanchat.api import RuntimeApi
from lanchat.identity import fingerprint
from lanchat.notices import Warnings
from lanchat.peers import Change, Peer, PeerTable
from lanchat.store import Store

log = logging.getLogger("lanchat.node")


class Presence:
    """The peer table and its events."""

    def __init__(self, own_id: str, store: Store, runtime: RuntimeApi, *,
                 connected: Callable[[str], bool], queued: Callable[[str], int],
                 dial: Callable[[str], None], warnings: Warnings) -> None:
        self._table = PeerTable(own_id)
        self.store = store
        self.runtime = runtime
        self._connected = connected
        self._queued = queued
        self._dial = dial
        self._warnings = warnings
        self._trust: dict[str, str] = {}
        now = time.time()
        for known in store.peers.known():
            self._table.remember(known.id, known.nick, known.host, list(known.addresses),
                                 known.port, now)
            self._trust[known.id] = known.trust

    @property
    def table(self) -> PeerTable:
        """The table itself (reads on the loop thread)."""
        return self._table

    # -- views ----------------------------------------------------------------------------

    def view(self, peer: Peer) -> dict[str, Any]:
        """The `peer` object of the headless contract, with this node's own facts."""
        view = peer.public()
        view["connected"] = self._connected(peer.id)
        view["queued"] = self._queued(peer.id)
        view["first_seen"] = peer.first_seen
        view["last_seen"] = peer.last_seen
        view["left_reason"] = peer.left_reason
        view["trust"] = self._trust.get(peer.id, "new")
        return view

    def all(self) -> list[dict[str, Any]]:
        """Every peer, by list number."""
        return [self.view(p) for p in self._table.all()]

    def resolve(self, ref: str) -> dict[str, Any]:
        """The one known peer `ref` names (lanchat/naming.py): AmbiguousName (a LookupError
        listing the candidates with trust and online state) when several keys go by that
        name, online or not; LookupError when none does."""
        try:
            return self.view(self._table.resolve(ref))
        except naming.AmbiguousName:
            return naming.resolve(ref, self.all())  # raises again, listing trust too

    def trust_of(self, peer_id: str) -> str | None:
        """The stored trust of a known peer, None if it is not known."""
        return self._trust.get(peer_id)

    def keeps(self, peer_id: str) -> bool:
        """True for a peer the table must not forget: known from a session or queued for."""
        return bool(self._queued(peer_id)) or peer_id in self._trust

    # -- changes --------------------------------------------------------------------------

    def seen(self, peer_id: str, via: str, now: float, **fields: Any) -> None:
        """A source saw the peer."""
        self.announce(self._table.seen(peer_id, via, now, **fields))

    def lost(self, peer_id: str, via: str, reason: str, now: float) -> None:
        """A source no longer sees the peer."""
        self.announce(self._table.lost(peer_id, via, reason, now))

    def prune(self, max_size: int) -> int:
        """Forget the oldest offline peers beyond `max_size` that nothing keeps."""
        return self._table.prune(max_size, self.keeps)

    def remember(self, peer_id: str, *, exchanged: bool = False) -> None:
        """Keep the peer in the store (refresh a known one; `exchanged`: a message or a
        file went either way, so it is kept across restarts)."""
        peer = self._table.get(peer_id)
        if peer is None:
            return
        try:
            self.store.peers.remember(peer_id, peer.nick, peer.host, peer.addresses, peer.port,
                                     exchanged=exchanged)
        except sqlite3.Error as exc:
            log.warning("could not remember peer %s: %s", peer_id[:16], exc)
            return
        self._trust.setdefault(peer_id, "tofu")

    def set_trust(self, peer_id: str, trust: str) -> dict[str, Any]:
        """Store a peer's trust (remembering the peer first if needed); return its view."""
        peer = self._table.get(peer_id)
        if peer is None:
            raise LookupError(peer_id)
        if not self.store.peers.set_trust(peer_id, trust):
            self.store.peers.remember(peer_id, peer.nick, peer.host, peer.addresses, peer.port)
            self.store.peers.set_trust(peer_id, trust)
        self._trust[peer_id] = trust
        view = self.view(peer)
        self.runtime.emit("peer_updated", peer=view)  # screens show the new mark
        return view

    def forget(self, peer_id: str) -> None:
        """Drop the peer from the store and the table."""
        self._warnings.notices.resolve_prefix(f"name_taken:{peer_id}:")
        self.store.peers.forget(peer_id)
        self._trust.pop(peer_id, None)
        self._table.forget(peer_id)

    def announce(self, change: Change | None) -> None:
        """Turn a table change into its event; a joined peer with queued mail is dialled."""
        if change is None:
            return
        view = self.view(change.peer)
        if change.kind != "left":
            self._check_name(view)
        if change.kind == "joined":
            self.runtime.emit("peer_joined", peer=view)
            if self._queued(change.peer.id):
                self._dial(change.peer.id)
        elif change.kind == "left":
            self.runtime.emit("peer_left", peer=view, reason=change.reason)
        else:
            self.runtime.emit("peer_updated", peer=view)

    def _check_name(self, view: dict[str, Any]) -> None:
        """A key that takes the name of a known peer: a warning naming both fingerprints."""
        if view["trust"] in ("verified", "trusted"):
            return
        for other in naming.name_taken(view["id"], view["nick"], self._table.all(),
                                       self.trust_of):
            self.runtime.count("names_taken")
            self._warnings.warn(
                f"name_taken:{view['id']}:{other.id}", "warning", code="name_taken",
                message=naming.taken_message(view, self.view(other)), peer=view["id"],
                nick=view["nick"], known=other.id, known_nick=other.nick,
                fingerprints=[fingerprint(view["id"]), fingerprint(other.id)])
