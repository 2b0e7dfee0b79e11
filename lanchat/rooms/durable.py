"""Room messages on the node's durable path (the rooms' `api.DurableHandler`, registered
with the node): which copies are admitted, stored inside the group commit, shown once
stored, announced as `sent` once this node's own post is in the outbox, counted as members
ack them, and how long an early one waits for the messages before it (loop thread)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from lanchat.api import NodeHost
from lanchat.nicks import clean_received_nick
from lanchat.protocol import Message
from lanchat.rooms import signing, views
from lanchat.rooms.model import Room
from lanchat.rooms.storage import SCHEMA, RoomLog
from lanchat.rooms.wire import RoomMsg

log = logging.getLogger(__name__)

GAP_WAIT_S = 10.0  # an author's early message waits this long for the ones before it
GAP_CHECK_S = 1.0


class RoomMessages:
    """Own messages members have not all acked, others' copies relayed and not yet acked,
    and the gaps asked about; the gap timer."""

    types: tuple[type[Message], ...] = (RoomMsg,)
    schema = SCHEMA

    def __init__(self, node: NodeHost, log: RoomLog, rooms: Mapping[str, Room], *,
                 label: Callable[[str], str] = str,
                 ask_gap: Callable[[str, str], None] = lambda rid, author: None) -> None:
        self.node = node
        self._label = label  # room id -> the room as shown
        self._ask_gap = ask_gap  # (room, author): ask members for what comes before
        self.log = log
        self._rooms = rooms
        self._posted: set[str] = set()  # own posts queued, not yet stored (any thread)
        self._posted_lock = threading.Lock()
        self.pending: dict[str, list[Any]] = {}  # own message id -> [room, of, acked]
        self.relayed: dict[str, set[str]] = {}  # peer -> others' messages relayed, unacked
        self._asked: set[tuple[str, str]] = set()  # authors whose gap was asked about
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Load what members have not acked yet; start the gap timer."""
        own = self.node.node_id
        for msg_id, (room_name, of, left) in self.node.store.read(
                lambda db: RoomLog.pending_own(db, own)).items():
            self.pending[msg_id] = [room_name, of, of - left]
        self.relayed = self.node.store.read(lambda db: RoomLog.relayed_queued(db, own))
        self._timer = asyncio.get_running_loop().call_later(GAP_CHECK_S, self._check_gaps)

    def stop(self) -> None:
        """Stop the gap timer."""
        if self._timer is not None:
            self._timer.cancel()

    def posted(self, msg_id: str, room: str, members: int) -> None:
        """An own post was queued to this many members (any thread, under the post lock):
        its `sent` event comes once it is stored; its acks are counted."""
        if members:
            self.pending[msg_id] = [room, members, 0]
        with self._posted_lock:
            self._posted.add(msg_id)

    # -- api.DurableHandler -----------------------------------------------------------

    def admit(self, peer_id: str, frames: list[Message]) -> list[Message]:
        """Keep the copies that came from their author, or that a member relayed signed
        by their author, for a room this node is in, by an author allowed to post there
        (a member: `Room.may_post`); drop (and count) the rest."""
        kept: list[Message] = []
        for m in frames:
            assert isinstance(m, RoomMsg)
            room = self._rooms.get(m.rid)
            if room is None or not room.joined:
                self._count("room_not_joined")
                continue
            # The author's own session proved its key (TLS and the in-channel proof), as
            # for a direct message; a copy relayed by anyone else must carry the author's
            # signature. Copies are checked again before this node relays them.
            from_author = m.author == peer_id and signing.is_key_of(m.author, m.key)
            if ((room.kind == "private" and peer_id not in room.members())
                    or not room.may_post(m.author, m.ts, from_author)):
                self._count("room_refused")
                continue
            if not from_author and not m.verified():
                self._count("room_forged")
                log.info("dropped a room message that %s relayed: bad signature", peer_id[:16])
                continue
            kept.append(m)
        return kept

    def store_in(self, db: Any, items: list[tuple[str, Message]],
                 now: float) -> list[tuple[str, Message]]:
        """Inside the group commit: see RoomLog.store_in."""
        return self.log.store_in(db, items, now)

    def store_out(self, db: Any, items: list[tuple[Any, Message]], now: float) -> None:
        """Inside the group commit: see RoomLog.store_out."""
        self.log.store_out(db, items, now)

    def stored(self, fresh: list[tuple[str, Message]]) -> None:
        """Show new room messages; for an author whose early message is held and not
        asked about yet, ask the members for what comes before."""
        for _, m in fresh:
            assert isinstance(m, RoomMsg)
            self._show(m)
        self._asked &= set(self.log.held)
        for key in list(self.log.held):
            if key not in self._asked:
                self._asked.add(key)
                self._ask_gap(*key)

    def stored_out(self, out: list[tuple[list[str], Message]]) -> None:
        """Own posts are in the outbox: one `sent` event each (not for catch-up copies)."""
        for peers, m in out:
            assert isinstance(m, RoomMsg)
            with self._posted_lock:
                if m.msg_id not in self._posted:
                    continue
                self._posted.discard(m.msg_id)
            room = self._rooms.get(m.rid)
            members = [views.member(room, p, self.node.presence.table) for p in peers] \
                if room is not None else []
            self.node.emit("sent", id=m.msg_id, **{"from": {"id": m.author, "nick": m.nick}},
                           to="room", room=self._label(m.rid), room_id=m.rid,
                           recipients=members, text=m.text, sent=m.ts / 1000)

    def store_failed(self) -> None:
        """The commit failed: read the marks back from the database."""
        self.node.store.read(self.log.load)

    def _show(self, m: RoomMsg) -> None:
        nick = clean_received_nick(m.nick, m.author, source="room",
                                   counters=self.node.runtime.counters)
        self.node.emit("message", id=m.msg_id, **{"from": {"id": m.author, "nick": nick}},
                       to="room", room=self._label(m.rid), room_id=m.rid, text=m.text,
                       sent=m.ts / 1000)

    def acked(self, done: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Count members' acks of own messages; relayed copies need no event."""
        rest = []
        for peer_id, msg_id in done:
            entry = self.pending.get(msg_id)
            if entry is not None:
                entry[2] += 1
                self.node.emit("delivered", id=msg_id, to=peer_id,
                               room=self._label(entry[0]), room_id=entry[0],
                               acked=entry[2], of=entry[1])
                if entry[2] >= entry[1]:
                    del self.pending[msg_id]
            elif msg_id in (relayed := self.relayed.get(peer_id, set())):
                relayed.discard(msg_id)
                if not relayed:
                    del self.relayed[peer_id]
            else:
                rest.append((peer_id, msg_id))
        return rest

    def _check_gaps(self) -> None:
        now = time.monotonic()
        late = [k for k, since in self.log.held_since.items() if now - since >= GAP_WAIT_S]
        for key in late:
            released = self.node.store.transact(functools.partial(self.log.give_up, key=key))
            self._count("room_gaps")
            self._asked.discard(key)
            for m in released:
                self._show(m)
        self._timer = asyncio.get_running_loop().call_later(GAP_CHECK_S, self._check_gaps)

    def _count(self, key: str, n: int = 1) -> None:
        self.node.runtime.count(key, n)
