"""Messages through a node: group commit of what arrived and what is to be sent, the
outbox pump, acks, and backpressure when listeners lag.

A mixin of `Node` (lanchat/node.py); everything here runs on the node's loop thread,
except `_queue`, which any thread may call.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import secrets
import threading
import time
from typing import Any

from lanchat.events import Event
from lanchat.protocol import HEADER, MAX_TEXT_CHARS, Chat, encode
from lanchat.session import Session
from lanchat.store import Store

log = logging.getLogger("lanchat.node")

STORE_RETRY_S = 1.0
# Events not yet taken by the listeners: above the high mark the loop stops reading from
# peers until the listeners (a terminal, a script) catch up to the low mark.
EVENTS_HIGH_WATER = 20_000
EVENTS_LOW_WATER = 2_000


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
    _check_text(text)


def _check_text(text: str) -> None:
    if not text:
        raise ValueError("nothing to send")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"message longer than {MAX_TEXT_CHARS} characters; send it as a file")


class Delivery:
    """Group commit and the outbox pump of a Node (a mixin: the attributes are the Node's)."""

    nick: str
    store: Store | None
    counters: dict[str, int]
    _loop: asyncio.AbstractEventLoop
    _events: queue.SimpleQueue[Event | None]
    _sessions: dict[str, Session]
    _outbox_count: dict[str, int]
    _in: list[tuple[Session, list[Chat]]]
    _out: list[tuple[list[str], Chat, bytes]]
    _acks: list[tuple[str, tuple[str, ...]]]
    _flush_scheduled: bool
    _submit_lock: threading.Lock
    _submitted: list[tuple[list[str], Chat, bytes]]
    _wake_pending: bool
    _throttled: set[Session]
    _throttling: bool

    def _count(self, key: str, n: int = 1) -> None:
        raise NotImplementedError

    def emit(self, name: str, /, **fields: Any) -> None:
        raise NotImplementedError

    def _ensure_dialer(self, key: str, *, kick: bool = True) -> None:
        raise NotImplementedError

    def session_chats(self, session: Session, chats: list[Chat]) -> None:
        """Queue received messages for the next group commit."""
        if not session.peer_id:
            self._count("chats_unauthenticated")
            return
        self._in.append((session, chats))
        self._schedule_flush()

    def session_acks(self, session: Session, ids: tuple[str, ...]) -> None:
        """Queue acks: the outbox rows go in the next commit."""
        self._acks.append((session.peer_id, ids))
        self._schedule_flush()

    def session_writable(self, session: Session) -> None:
        """The peer caught up: send more."""
        self._pump(session)

    def _queue(self, peers: list[str], text: str, *, broadcast: bool) -> str:
        """Hand a message to the loop; the loop is woken once per batch, not per message."""
        msg = Chat(new_message_id(), time.time(), text, broadcast, self.nick)
        payload = encode(msg)[4:]
        with self._submit_lock:
            self._submitted.append((peers, msg, payload))
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._loop.call_soon_threadsafe(self._take_submitted)
        return msg.msg_id

    def _take_submitted(self) -> None:
        with self._submit_lock:
            batch, self._submitted = self._submitted, []
            self._wake_pending = False
        self._out.extend(batch)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Store what arrived and what is to be sent in one commit; then ack and send."""
        self._flush_scheduled = False
        inbound, outbound, acks = self._in, self._out, self._acks
        self._in, self._out, self._acks = [], [], []
        if not (inbound or outbound or acks):
            return
        assert self.store is not None
        incoming = [(s.peer_id, c) for s, chats in inbound for c in chats]
        try:
            fresh, done = self.store.commit_batch(incoming, outbound, acks)
        except Exception as exc:  # noqa: BLE001 - the node goes on without acking
            self._store_failed(exc, inbound, outbound)
            if acks:  # the peers will not ack again: keep them for a later commit
                self._acks[:0] = acks
                self._loop.call_later(STORE_RETRY_S, self._schedule_flush)
            return
        self._count("duplicates", len(incoming) - len(fresh))
        for session, chats in inbound:
            session.ack([c.msg_id for c in chats])
        nicks = {s.peer_id: s.peer_nick for s, _ in inbound}
        for peer_id, chat in fresh:
            self.emit("message", id=chat.msg_id,
                      **{"from": {"id": peer_id, "nick": nicks.get(peer_id, chat.nick)}},
                      to="broadcast" if chat.broadcast else "direct", text=chat.text,
                      sent=chat.ts)
        backlog = self._events.qsize()
        self.counters["max_event_backlog"] = max(self.counters.get("max_event_backlog", 0),
                                                 backlog)
        if backlog > EVENTS_HIGH_WATER:
            self._throttle([s for s, _ in inbound])
        self._count("acks_unknown", sum(len(ids) for _, ids in acks) - len(done))
        for peer_id, msg_id in done:
            self._outbox_count[peer_id] = self._outbox_count.get(peer_id, 1) - 1
            self.emit("delivered", id=msg_id, to=peer_id)
        for peers, _, _ in outbound:
            for peer_id in peers:
                self._outbox_count[peer_id] = self._outbox_count.get(peer_id, 0) + 1
        touched = {p for peers, _, _ in outbound for p in peers}
        for peer_id in touched:
            ready = self._sessions.get(peer_id)
            if ready is not None:
                self._pump(ready)
            else:
                self._ensure_dialer(peer_id)

    def _throttle(self, sessions: list[Session]) -> None:
        """The listeners fell behind: stop reading from these peers for now."""
        self._count("throttled")
        for session in sessions:
            if session not in self._throttled:
                session.pause_reading()
                self._throttled.add(session)
        self._throttling = True
        if self._events.qsize() < EVENTS_LOW_WATER:
            self._throttling = False
            self._unthrottle()

    def _unthrottle(self) -> None:
        for session in self._throttled:
            session.resume_reading()
        self._throttled.clear()

    def _store_failed(self, exc: Exception, inbound: list[tuple[Session, list[Chat]]],
                      outbound: list[tuple[list[str], Chat, bytes]]) -> None:
        self._count("store_errors")
        log.error("store failed: %s", exc)
        self.emit("error", code="store_failed",
                  message=f"could not write the history database: {exc}; check free space "
                          "and permissions in the home")
        for session, _ in inbound:
            session.fail("receiver could not store messages", tell_peer=True)
        for peers, msg, _ in outbound:
            for peer_id in peers:
                self.emit("not_delivered", id=msg.msg_id, to=peer_id, reason="store failed")

    def _pump(self, session: Session) -> None:
        """Send queued messages for the session's peer, in order, until the buffer fills."""
        assert self.store is not None
        while session.ready and not session.paused:
            rows = self.store.outbox_after(session.peer_id, session.last_sent_seq)
            if not rows:
                return
            session.write_frame(b"".join(HEADER.pack(len(p)) + p for _, _, p in rows))
            session.last_sent_seq = rows[-1][0]

