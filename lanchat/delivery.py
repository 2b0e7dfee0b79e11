"""Messages through a node: group commit of what arrived and what is to be sent, acks,
and backpressure when listeners lag (the outbox pump is `lanchat.wire`).

`Delivery` owns what is on its way: the batches for the next commit, the outbox count per
peer, control messages waiting for a session, and which sessions are paused for
backpressure. Everything runs on the loop thread except `queue`, which any thread may call.
One mechanism for every message kind: direct, broadcast (and rooms) are outbox rows.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable

from lanchat.api import Capability, DurableHandler, PeerSession, RuntimeApi
from lanchat.limits import accepted_time
from lanchat.protocol import MAX_TEXT_CHARS, Chat, Message, encode
from lanchat.sessions import Sessions
from lanchat.store import Received, Store
from lanchat.wire import Wire

log = logging.getLogger("lanchat.node")

STORE_RETRY_S = 1.0
# Events not yet taken by the listeners: above the high mark the loop stops reading from
# peers until the listeners (a terminal, a script) catch up to the low mark.
EVENTS_HIGH_WATER = 20_000
EVENTS_LOW_WATER = 2_000
# Messages to send stored per commit: a flood queued at once goes out in batches, so the
# first ones are on the wire (and being stored by the peer) while the next are written,
# and acks and heartbeats are read between the commits instead of after one long one.
FLUSH_MAX_OUT = 1024
# Acks already reported (`delivered`) wait this long for a commit to join before they get
# one of their own (it only deletes their outbox rows).
ACK_COMMIT_DELAY_S = 0.05


# Message ids need to be unique, not secret: a generator seeded once from the OS is enough,
# and an os.urandom() call per message cost 8-15 us here (a getrandom syscall).
_ids = random.Random(secrets.token_bytes(32))
_ids_lock = threading.Lock()


def new_message_id() -> str:
    """A time-ordered id: 12 hex digits of milliseconds, then 20 random hex digits."""
    with _ids_lock:
        tail = _ids.getrandbits(80)
    return f"{int(time.time() * 1000):012x}{tail:020x}"


def check_text(text: str) -> None:
    """Raise ValueError if `text` cannot be sent as one message."""
    if not text:
        raise ValueError("nothing to send")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"message longer than {MAX_TEXT_CHARS} characters; send it as a file")


class Delivery:
    """Group commit, acks and backpressure of one node; `wire` writes the outbox."""

    def __init__(self, runtime: RuntimeApi, store: Store, sessions: Sessions,
                 nick: Callable[[], str], dial: Callable[[str], None],
                 backlog: Callable[[], int],
                 when_drained: Callable[[int, Callable[[], None]], None],
                 exchanged: Callable[[str], None] = lambda peer_id: None) -> None:
        self.runtime = runtime
        self.store = store
        self.sessions = sessions
        self._nick = nick
        self._dial = dial
        self._backlog = backlog
        self._when_drained = when_drained
        self._exchanged = exchanged
        self.outbox_count: dict[str, int] = store.outbox_peers()
        self.wire = Wire(runtime, store, sessions)
        self._control: dict[str, list[Message]] = {}
        self._in: list[tuple[PeerSession, list[Message]]] = []
        self._out: list[tuple[list[str], Message, bytes]] = []
        self._acks: list[tuple[str, tuple[str, ...]]] = []
        self._announced: set[tuple[str, str]] = set()  # acks reported before their commit
        self._acks_timer = False
        self._store_ok = True  # the last commit succeeded (write ahead only then)
        self._kinds: dict[type[Message], DurableHandler] = {}
        self._submit_lock = threading.Lock()
        self._submitted: list[tuple[list[str], Message, bytes]] = []
        self._wake_pending = False
        self._throttled: set[PeerSession] = set()
        self._flush_scheduled = False
        # Peers on /ignore (the node replaces the set): their messages are stored and
        # acked, never emitted.
        self.ignored: frozenset[str] = frozenset()
        self.stored_out: Callable[[list[tuple[list[str], Message, bytes]]], None] = lambda o: None

    # -- what waits for whom (loop thread) ------------------------------------------------

    def queued(self, peer_id: str) -> int:
        """Messages in the outbox for a peer."""
        return self.outbox_count.get(peer_id, 0)

    def waiting(self) -> list[str]:
        """Peers something waits for (outbox rows or control messages)."""
        return [p for p, n in self.outbox_count.items() if n] + [
            p for p, msgs in self._control.items() if msgs]

    def wants(self, peer_id: str) -> bool:
        """True while something waits for the peer."""
        return bool(self.outbox_count.get(peer_id) or self._control.get(peer_id))

    def forget(self, peer_id: str) -> None:
        """The peer is forgotten: nothing waits for it any more."""
        self.outbox_count.pop(peer_id, None)
        self._control.pop(peer_id, None)

    # -- sending (any thread) ---------------------------------------------------------------

    def queue(self, peers: list[str], text: str, *, broadcast: bool) -> str:
        """Hand a message to the loop; the loop is woken once per batch, not per message."""
        msg = Chat(new_message_id(), time.time(), text, broadcast, self._nick())
        self._submit(peers, msg, encode(msg)[4:])
        return msg.msg_id

    def queue_frame(self, peers: list[str], message: Message) -> None:
        """Queue a durable frame of a registered kind (e.g. a room message) to these peers,
        on the same path as a chat message (any thread)."""
        self._submit(peers, message, encode(message)[4:])

    def _submit(self, peers: list[str], msg: Message, payload: bytes) -> None:
        with self._submit_lock:
            self._submitted.append((peers, msg, payload))
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self.runtime.call_soon(self._take_submitted)

    def add_kind(self, handler: DurableHandler) -> None:
        """Let a capability's frames travel like chat messages (loop thread, at start)."""
        self.store.add_kind(handler)
        for cls in handler.types:
            self._kinds[cls] = handler

    def send_control(self, peer_id: str, message: Message) -> None:
        """Send a control message now, or keep it in memory until a session is up."""
        session = self.sessions.get(peer_id)
        if session is not None and Capability.CONTROL in session.capabilities:
            session.send(message)
            return
        self._control.setdefault(peer_id, []).append(message)
        self._dial(peer_id)

    # -- sessions report (loop thread) ------------------------------------------------------

    def session_ready(self, session: PeerSession) -> None:
        """A session speaks for its peer: send what waits for it."""
        if Capability.CONTROL in session.capabilities:
            for message in self._control.pop(session.peer_id, []):
                session.send(message)
        self.wire.pump(session)

    def session_closed(self, session: PeerSession) -> None:
        """A connection is gone."""
        self._throttled.discard(session)
        self.wire.closed(session)
        if self._acks:  # rows already reported delivered leave before a new session
            self._schedule_flush()  # could send them again

    def session_chats(self, session: PeerSession, chats: list[Message]) -> None:
        """Queue received messages for the next group commit."""
        if not session.peer_id:
            self.runtime.count("chats_unauthenticated")
            return
        self._in.append((session, chats))
        self._schedule_flush()

    def session_acks(self, session: PeerSession, ids: tuple[str, ...]) -> None:
        """The peer stored these: `delivered` at once for the ones this session carried
        (their rows are durable already); the outbox rows go in the next commit, which
        reports the others (sent on an earlier session) once it finds their rows."""
        peer_id = session.peer_id
        announced = self._announced
        known = [(peer_id, msg_id) for msg_id in self.wire.acked(session, ids)
                 if (peer_id, msg_id) not in announced]  # not if sent again meanwhile
        if known:
            announced.update(known)
            self.outbox_count[peer_id] = self.outbox_count.get(peer_id, len(known)) - len(known)
            self._announce(known)
        self._acks.append((peer_id, ids))
        if len(known) < len(ids):
            self._schedule_flush()
        elif not self._acks_timer:
            # Only bookkeeping left (the outbox rows to delete): it joins the next commit
            # that comes anyway (the next message's), or goes on its own a moment later.
            self._acks_timer = True
            self.runtime.loop.call_later(ACK_COMMIT_DELAY_S, self._acks_due)

    def _acks_due(self) -> None:
        self._acks_timer = False
        if self._acks:
            self._schedule_flush()

    def _announce(self, pairs: list[tuple[str, str]]) -> None:
        """`delivered` for these (peer, id) pairs, each kind's own first (room posts)."""
        for kind in set(self._kinds.values()):
            pairs = kind.acked(pairs)
        for peer_id, msg_id in pairs:
            self.runtime.emit("delivered", id=msg_id, to=peer_id)

    # -- group commit ---------------------------------------------------------------------

    def _take_submitted(self) -> None:
        with self._submit_lock:
            batch, self._submitted = self._submitted, []
            self._wake_pending = False
        self._out.extend(batch)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.runtime.call_soon(self.flush)

    def flush(self) -> None:
        """Store what arrived and what is to be sent in one commit; then ack and send."""
        self._flush_scheduled = False
        inbound, acks = self._in, self._acks
        outbound = self._out
        if len(outbound) > FLUSH_MAX_OUT:
            outbound, self._out = outbound[:FLUSH_MAX_OUT], outbound[FLUSH_MAX_OUT:]
            self._schedule_flush()  # the rest after the loop has read what came meanwhile
        else:
            self._out = []
        self._in, self._acks = [], []
        if not (inbound or outbound or acks):
            return
        incoming = self._received(inbound)
        touched = {p for peers, _, _ in outbound for p in peers}
        sent_from: dict[PeerSession, int] = {}  # sessions written early: position before
        # Not ahead of a store that failed its last commit: a message may leave only when
        # it is likely to be kept (a failed commit reports it not_delivered).
        ahead = (self.wire.write_ahead(outbound, touched) if touched and self._store_ok
                 else set())

        def send_early() -> None:
            # The new rows leave before the commit's fsync (or, to a session with nothing
            # else unsent, before they are even stored: `Wire.write_ahead`), so the round
            # trip overlaps the store. A crash now loses only messages reported as queued
            # (the peer drops a resend by id); `delivered` waits for this commit, which
            # the loop finishes first.
            for peer_id in touched:
                session = self.sessions.get(peer_id)
                if session is None:
                    continue
                sent_from.setdefault(session, self.sessions.position(session))
                if session in ahead:
                    self.wire.stored_ahead(session)
                else:
                    self.wire.pump(session)

        try:
            fresh, done = self.store.commit_batch(incoming, outbound, acks,
                                                  send_early if touched else None)
        except Exception as exc:  # noqa: BLE001 - the node goes on without acking
            for session, position in sent_from.items():  # those rows were rolled back
                self.sessions.advance(session, position)
            self.wire.unwritten(outbound)
            self._store_ok = False
            for kind in set(self._kinds.values()):
                kind.store_failed()
            self._store_failed(exc, inbound, outbound)
            if acks:  # the peers will not ack again: keep them for a later commit
                self._acks[:0] = acks
                self.runtime.loop.call_later(STORE_RETRY_S, self._schedule_flush)
            return
        self._store_ok = True
        count = self.runtime.count
        count("commits")
        count("duplicates", len(incoming) - len(fresh))
        self.stored_out(outbound)
        for session, chats in inbound:
            session.ack([getattr(c, "msg_id") for c in chats])  # noqa: B009 - durable
        emit = self.runtime.emit
        others: dict[int, tuple[DurableHandler, list[tuple[str, Message]]]] = {}
        for (peer_id, nick, ts, chat), seq in fresh:
            if not isinstance(chat, Chat):
                kind = self._kinds[type(chat)]
                others.setdefault(id(kind), (kind, []))[1].append((peer_id, chat))
                continue
            if peer_id in self.ignored:  # stored and acked, never shown (/ignore)
                count("ignored_messages")
                continue
            emit("message", id=chat.msg_id, **{"from": {"id": peer_id, "nick": nick}},
                 to="broadcast" if chat.broadcast else "direct", text=chat.text, sent=ts,
                 seq=seq, room=None)
        for kind, shown in others.values():
            kind.stored(shown)
        backlog = self._backlog()
        counters = self.runtime.counters
        counters["max_event_backlog"] = max(counters.get("max_event_backlog", 0), backlog)
        if backlog > EVENTS_HIGH_WATER:
            self._throttle([s for s, _ in inbound])
        talked = {r.peer for r, _ in fresh} | {p for p, _ in done}
        for peer_id in talked.union(*(peers for peers, _, _ in outbound)):
            self._exchanged(peer_id)
        count("acks_unknown", sum(len(ids) for _, ids in acks) - len(done))
        announced = self._announced
        late = [pair for pair in done if pair not in announced]
        for peer_id, _ in late:
            self.outbox_count[peer_id] = self.outbox_count.get(peer_id, 1) - 1
        self._announce(late)
        if acks:
            self.wire.settled(acks)
            if announced:
                announced.difference_update((p, i) for p, ids in acks for i in ids)
        for peers, _, _ in outbound:
            for peer_id in peers:
                self.outbox_count[peer_id] = self.outbox_count.get(peer_id, 0) + 1
        for peer_id in touched:
            ready = self.sessions.get(peer_id)
            if ready is None:
                self._dial(peer_id)
            elif ready not in sent_from:
                self.wire.pump(ready)

    def flush_all(self) -> None:
        """Store everything queued, in commits of at most FLUSH_MAX_OUT each (at close: the
        loop stops after it, so a flush scheduled for the rest would never run)."""
        self.flush()
        while self._out:
            self.flush()

    def _received(self, inbound: list[tuple[PeerSession, list[Message]]]) -> list[Received]:
        """What arrived, named by the session's proven peer and nick (a frame's own `nick`
        is never read); a send time outside the sane window becomes the receive time.
        Frames of other kinds are kept as their kind admits them (the rest are dropped and
        counted by the kind, and acked all the same)."""
        now = time.time()
        out = []
        for session, frames in inbound:
            peer, nick = session.peer_id, session.peer_nick
            chats = [f for f in frames if isinstance(f, Chat)]
            if len(chats) != len(frames):
                out.extend(self._admitted(peer, nick, now, frames))
            for chat in chats:
                ts = accepted_time(chat.ts, now)
                if ts is None:
                    self.runtime.count("send_times_clamped")
                    ts = now
                out.append(Received(peer, nick, ts, chat))
        return out

    def _admitted(self, peer: str, nick: str, now: float,
                  frames: list[Message]) -> list[Received]:
        """The frames of durable kinds (not chat) that their kind lets in."""
        groups: dict[int, tuple[DurableHandler, list[Message]]] = {}
        for f in frames:
            if isinstance(f, Chat):
                continue
            kind = self._kinds.get(type(f))
            if kind is None:
                self.runtime.count("frames_without_kind")
                continue
            groups.setdefault(id(kind), (kind, []))[1].append(f)
        return [Received(peer, nick, now, f) for kind, group in groups.values()
                for f in kind.admit(peer, group)]

    def _throttle(self, sessions: list[PeerSession]) -> None:
        """The listeners fell behind: stop reading from these peers for now."""
        self.runtime.count("throttled")
        for session in sessions:
            if session not in self._throttled:
                session.pause_reading()
                self._throttled.add(session)
        self._when_drained(EVENTS_LOW_WATER, self._unthrottle)
        if self._backlog() < EVENTS_LOW_WATER:
            self._unthrottle()

    def _unthrottle(self) -> None:
        for session in self._throttled:
            session.resume_reading()
        self._throttled.clear()

    def _store_failed(self, exc: Exception, inbound: list[tuple[PeerSession, list[Message]]],
                      outbound: list[tuple[list[str], Message, bytes]]) -> None:
        self.runtime.count("store_errors")
        log.error("store failed: %s", exc)
        self.runtime.emit("error", code="store_failed",
                          message=f"could not write the history database: {exc}; check free "
                                  "space and permissions in the home")
        for session, _ in inbound:
            session.fail("receiver could not store messages", tell_peer=True)
        for peers, msg, _ in outbound:
            for peer_id in peers:
                self.runtime.emit("not_delivered", id=getattr(msg, "msg_id"),  # noqa: B009
                                  to=peer_id, reason="store failed")
