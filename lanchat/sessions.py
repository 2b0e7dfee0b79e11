"""Which sessions a node has: one per peer, the duplicate rule, and how far each session
has read the outbox.

`SessionRegistry` is owned by the loop thread; nothing else writes its state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from lanchat.api import PeerSession

MAX_PENDING_HANDSHAKES = 256  # connections still in TLS or the key proof, at most
# Both sides dialling at once make two sessions within this time of each other; a peer that
# connects again later than this lost the session we hold (a pulled cable: our side has
# not noticed yet), so the new one wins.
RACE_WINDOW_S = 2.0


class Sessions(Protocol):
    """The registry as the node's other parts use it (loop thread)."""

    def get(self, peer_id: str) -> PeerSession | None:
        """The session that speaks for a peer, if any."""
        ...

    def position(self, session: PeerSession) -> int:
        """The last outbox seq written to this session."""
        ...

    def advance(self, session: PeerSession, seq: int) -> None:
        """Outbox rows up to `seq` were written to this session."""
        ...


class SessionRegistry:
    """Every live session; the one that speaks for each peer; outbox positions."""

    def __init__(self, own_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.own_id = own_id
        self._clock = clock
        self._since: dict[PeerSession, float] = {}  # when each session began to speak
        self._by_peer: dict[str, PeerSession] = {}
        self._all: set[PeerSession] = set()
        self._positions: dict[PeerSession, int] = {}
        self._handshakes = 0

    def __len__(self) -> int:
        return len(self._by_peer)

    def __iter__(self) -> Iterator[PeerSession]:
        """The sessions that speak for a peer."""
        return iter(list(self._by_peer.values()))

    def every(self) -> list[PeerSession]:
        """Every live connection, ready or not, registered or not."""
        return list(self._all)

    def get(self, peer_id: str) -> PeerSession | None:
        """The session that speaks for a peer, if any."""
        return self._by_peer.get(peer_id)

    def connected(self, peer_id: str) -> bool:
        """True when a session speaks for the peer."""
        return peer_id in self._by_peer

    # -- connections before they speak for a peer ----------------------------------------------

    def handshake_begins(self) -> bool:
        """Count a connection in TLS; False (shed it) past the limit."""
        if self._handshakes >= MAX_PENDING_HANDSHAKES:
            return False
        self._handshakes += 1
        return True

    def handshake_ends(self) -> None:
        """A connection left the TLS handshake (either way)."""
        self._handshakes -= 1

    def add(self, session: PeerSession) -> None:
        """A connection is up (it may still fail the key proof)."""
        self._all.add(session)

    # -- one session per peer ---------------------------------------------------------------------

    def claim(self, session: PeerSession) -> bool:
        """Make `session` the one for its peer; False when an existing one is kept instead.
        The loser of a duplicate pair is closed with reason "duplicate"."""
        existing = self._by_peer.get(session.peer_id)
        if existing is not None and existing is not session:
            if not self.keep_new(existing, session):
                session.close("duplicate")
                return False
            existing.close("duplicate")
        self._by_peer[session.peer_id] = session
        self._positions[session] = 0
        self._since[session] = self._clock()
        return True

    def keep_new(self, old: PeerSession, new: PeerSession) -> bool:
        """Both sides decide alike: a new peer instance wins (the old session is stale), a
        redial wins, a connection long after the old one began wins (the peer lost the old
        one), else the session initiated by the smaller node id."""
        def initiator(s: PeerSession) -> str:
            return s.peer_id if s.server else self.own_id
        if old.peer_instance != new.peer_instance or initiator(old) == initiator(new):
            return True
        if self._clock() - self._since.get(old, self._clock()) > RACE_WINDOW_S:
            return True
        return initiator(new) == min(self.own_id, new.peer_id)

    def release(self, session: PeerSession) -> bool:
        """The connection is gone; True when it was the one for its peer."""
        self._all.discard(session)
        self._positions.pop(session, None)
        self._since.pop(session, None)
        if session.peer_id and self._by_peer.get(session.peer_id) is session:
            del self._by_peer[session.peer_id]
            return True
        return False

    def drop(self, peer_id: str) -> PeerSession | None:
        """Unregister the peer's session (the caller closes it)."""
        session = self._by_peer.pop(peer_id, None)
        if session is not None:
            self._positions.pop(session, None)
            self._since.pop(session, None)
        return session

    # -- outbox positions -------------------------------------------------------------------------

    def position(self, session: PeerSession) -> int:
        """The last outbox seq written to this session (0: none yet, start from the top)."""
        return self._positions.get(session, 0)

    def advance(self, session: PeerSession, seq: int) -> None:
        """Outbox rows up to `seq` were written to this session."""
        if session in self._positions:
            self._positions[session] = seq
