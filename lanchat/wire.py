"""What goes on the wire to each session: its peer's outbox rows, in order, once each.

`Wire` keeps no rows of its own: the store's outbox holds them and `Sessions` the last seq
written to each session. Rows go out after they are stored (`pump`), or, to a session that
has every older row already, before they are stored (`write_ahead`: the round trip then
overlaps the sender's own commit); a peer that asked us to slow down gets nothing until its
time is up (`hold`). Loop thread only.
"""

from __future__ import annotations

from lanchat.api import Capability, PeerSession, RuntimeApi
from lanchat.protocol import Message
from lanchat.sessions import Sessions
from lanchat.store import OUTBOX_PAGE, Store

# A batch larger than this goes out the usual way (stored, then pumped page by page as the
# socket takes it): writing ahead is for the round trip of a few messages, not for floods.
WRITE_AHEAD_MAX_BYTES = 256 * 1024


class Wire:
    """The outbox pump of one node."""

    def __init__(self, runtime: RuntimeApi, store: Store, sessions: Sessions) -> None:
        self._runtime = runtime
        self._store = store
        self._sessions = sessions
        self._held: dict[str, float] = {}  # peer -> loop time its outbox waits until
        # Ids written to each session and not yet acked on it (`acked`): their rows are
        # durable by the time an ack can be read (the loop finishes a commit first).
        self._in_flight: dict[PeerSession, set[str]] = {}
        # Sessions whose last pump found no row left to write (nothing older unsent):
        # what `write_ahead` may write to without asking the store.
        self._caught_up: set[PeerSession] = set()
        self._writing: PeerSession | None = None  # the session inside `write_outbox`
        self._acked_in_write: set[str] = set()  # ids it acked there (before any commit)

    def hold(self, session: PeerSession, seconds: float) -> None:
        """The peer asked us to slow down: what it has not acked stays in the outbox and
        goes again, from the first unacked row, after `seconds`."""
        loop = self._runtime.loop
        self._held[session.peer_id] = loop.time() + seconds
        self._sessions.advance(session, 0)
        self._caught_up.discard(session)
        self._runtime.count("slowed_down")
        loop.call_later(seconds, self._release, session.peer_id)

    def _release(self, peer_id: str) -> None:
        until = self._held.get(peer_id)
        if until is None or until > self._runtime.loop.time():
            return  # held again meanwhile: a later timer releases it
        del self._held[peer_id]
        session = self._sessions.get(peer_id)
        if session is not None:
            self.pump(session)

    def write_ahead(self, outbound: list[tuple[list[str], Message, bytes]],
                    peers: set[str]) -> set[PeerSession]:
        """Write new messages, before they are stored, to each of these peers' sessions
        that has every older outbox row written already (so the order holds); return
        those sessions. Once the rows are stored, `stored_ahead` moves each session's
        position past them, so they are not written twice."""
        frames: dict[str, tuple[list[bytes], list[str]]] = {}
        for peer_id in peers:
            session = self._sessions.get(peer_id)
            if session is not None and session in self._caught_up and self._open(session):
                frames[peer_id] = ([], [])
        if not frames:
            return set()
        for to, message, payload in outbound:
            for peer_id in to:
                if peer_id in frames:
                    frames[peer_id][0].append(payload)
                    frames[peer_id][1].append(getattr(message, "msg_id"))  # noqa: B009
        written = set()
        for peer_id, (payloads, ids) in frames.items():
            session = self._sessions.get(peer_id)
            if session is not None and len(payloads) <= OUTBOX_PAGE and sum(
                    map(len, payloads)) <= WRITE_AHEAD_MAX_BYTES:
                self._write(session, payloads, ids)
                written.add(session)
        return written

    def stored_ahead(self, session: PeerSession) -> None:
        """What `write_ahead` wrote to `session` is in the outbox now (same transaction):
        its position moves past those rows."""
        self._sessions.advance(session, self._store.outbox_last(session.peer_id))

    def _open(self, session: PeerSession) -> bool:
        """The session takes chat frames now: ready, its buffer not full, not held."""
        return (Capability.CHAT in session.capabilities and session.ready
                and not session.paused and session.peer_id not in self._held)

    def pump(self, session: PeerSession) -> None:
        """Send queued messages for the session's peer, in order, until the buffer fills."""
        self._caught_up.discard(session)
        if (Capability.CHAT not in session.capabilities
                or self._sessions.get(session.peer_id) is not session
                or session.peer_id in self._held):
            return
        while session.ready and not session.paused:
            rows = self._store.outbox_after(session.peer_id, self._sessions.position(session))
            if not rows:
                self._caught_up.add(session)
                return
            self._write(session, [p for _, _, p in rows], [m for _, m, _ in rows])
            self._sessions.advance(session, rows[-1][0])

    # -- acks on the wire -------------------------------------------------------------------

    def _write(self, session: PeerSession, payloads: list[bytes], ids: list[str]) -> None:
        """Write frames and keep their ids as in flight on the session, but for those it
        acked inside the write (a Bonjour chat stream, before the rows may be stored: they
        are reported once the commit finds their rows)."""
        self._writing = session
        try:
            session.write_outbox(payloads)
        finally:
            self._writing = None
        acked_now, self._acked_in_write = self._acked_in_write, set()
        self._in_flight.setdefault(session, set()).update(
            i for i in ids if i not in acked_now)

    def acked(self, session: PeerSession, ids: tuple[str, ...]) -> list[str]:
        """The ids of this ack that this session carried (each once): their rows were
        stored before the ack could be read, so they are delivered now."""
        if session is self._writing:
            self._acked_in_write.update(ids)
            return []
        flying = self._in_flight.get(session)
        known: list[str] = []
        if flying:
            for msg_id in ids:
                if msg_id in flying:
                    flying.discard(msg_id)
                    known.append(msg_id)
        return known

    def unwritten(self, outbound: list[tuple[list[str], Message, bytes]]) -> None:
        """Those messages' commit failed: an ack for them later delivers nothing."""
        for to, message, _ in outbound:
            for peer_id in to:
                session = self._sessions.get(peer_id)
                flying = self._in_flight.get(session) if session is not None else None
                if flying:
                    flying.discard(getattr(message, "msg_id"))  # noqa: B009

    def settled(self, acks: list[tuple[str, tuple[str, ...]]]) -> None:
        """These acks are committed (their rows deleted): a later ack of the same ids on
        any session (one that sent a row again before the delete) reports nothing."""
        gone: dict[str, set[str]] = {}
        for peer_id, ids in acks:
            gone.setdefault(peer_id, set()).update(ids)
        for session, flying in self._in_flight.items():
            settled = gone.get(session.peer_id)
            if settled:
                flying.difference_update(settled)

    def closed(self, session: PeerSession) -> None:
        """The session is gone: what it carried is acked, if at all, on another."""
        self._in_flight.pop(session, None)
        self._caught_up.discard(session)
