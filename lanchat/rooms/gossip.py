"""Membership without a server: the signed statements, lists and topics members pass each
other over their sessions, and the catch-up requests they answer (loop thread).

`Gossip` owns the directory of open rooms heard on the LAN and which rooms had their
first catch-up; it changes the rooms the extension keeps and asks it, through
`Membership`, to store and show what changed.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from lanchat.api import NodeHost, PeerSession
from lanchat.nicks import clean_received_nick
from lanchat.protocol import Message
from lanchat.rooms.durable import RoomMessages
from lanchat.rooms.model import Change, Room, Verdict, oldest_parted
from lanchat.rooms.storage import RoomLog
from lanchat.rooms.wire import (
    MAX_ROOM_MEMBERS,
    RoomMember,
    RoomMsg,
    RoomRoster,
    RoomSync,
    RoomTopic,
)

log = logging.getLogger(__name__)

MAX_DIRECTORY_ROOMS = 256  # open rooms not joined, kept from LAN announcements
# Topic versions are their setter's clock in ms; one further ahead than this would win
# over every later topic (and the next version would not fit the wire's bound).
MAX_TOPIC_AHEAD_MS = 24 * 3600 * 1000


class Membership(Protocol):
    """What gossip asks of the rooms extension (`extension.Rooms`)."""

    def persist(self, room: Room, *statements: RoomMember,
                forget: RoomMember | None = None) -> None:
        """Store a room's state (and these statements; drop `forget`'s row)."""

    def emit(self, event: str, room: Room | str, **fields: object) -> None:
        """A room event, with the room as shown and its id."""

    def invited(self, r: RoomRoster) -> None:
        """A list that newly names this node: keep it for the user to answer."""

    def uninvited(self, r: RoomRoster) -> None:
        """A newer list no longer names this node: a pending invitation is gone."""

    def known_changed(self) -> None:
        """The set of rooms known by name changed (how rooms are shown may change)."""

    def member(self, room: Room, node_id: str) -> dict[str, str]:
        """A member's id and nick, as events show them."""

    def own_statement(self, room: Room, joined: bool) -> RoomMember:
        """This node's signed statement that it is in the room (or left it)."""

    def announce_joined(self, room: Room, reason: str) -> None:
        """Emit `room_joined`."""


class Gossip:
    """Control frames between members."""

    def __init__(self, node: NodeHost, log: RoomLog, rooms: dict[str, Room],
                 messages: RoomMessages, membership: Membership) -> None:
        self.node = node
        self.log = log
        self.rooms = rooms  # the extension's, by room id
        self.messages = messages
        self._membership = membership
        self.directory: dict[str, dict[str, RoomMember]] = {}  # open rooms heard of
        self._synced: set[str] = set()  # rooms whose first catch-up was asked for

    def count(self, key: str, n: int = 1) -> None:
        """Add to a node counter (shown by doctor)."""
        self.node.runtime.count(key, n)

    def forget_sync(self, rid: str) -> None:
        """This node left the room: ask for everything again when it is back."""
        self._synced.discard(rid)

    # -- sending --------------------------------------------------------------------

    def send(self, peer_id: str, message: Message) -> None:
        """A control frame to one peer (dialled if need be)."""
        self.node.send_control(peer_id, message)

    def tell_members(self, room: Room, message: Message, *, also: frozenset[str] = frozenset(),
                     skip: frozenset[str] = frozenset()) -> None:
        """A control frame to every member (and `also`), never to anyone else."""
        own = self.node.node_id
        for peer_id in (room.members() | also) - skip - {own}:
            self.send(peer_id, message)

    def announce(self, statement: RoomMember) -> None:
        """Tell every peer online on the LAN that this node is in (or left) an open room."""
        for peer in self.node.presence.table.online():
            if peer.kind == "lanchat":  # foreign kinds (LocalSend, XMPP) have no rooms
                self.send(peer.id, statement)

    def welcome(self, room: Room, peer_id: str) -> None:
        """Send a member what it needs to know of a room, and ask it for what this node
        lacks: every statement, the list, the topic, then a catch-up request."""
        for s in list(room.statements.values()):
            self.send(peer_id, s)
        if room.roster is not None:
            self.send(peer_id, room.roster)
        if room.topic is not None:
            self.send(peer_id, room.topic)
        self.send(peer_id, self.sync_request(room, peer_id))

    def sync_request(self, room: Room, peer_id: str) -> RoomSync:
        """What to ask a member for: everything, once per room after start or join;
        then what its own messages and those of members now offline may have added."""
        heads = tuple(self.log.heads(room.key).items())
        if room.key not in self._synced:
            self._synced.add(room.key)
            return RoomSync(room.name, heads, None, room.owner)
        online = {p.id for p in self.node.presence.table.online()}
        offline = sorted(m for m in room.members() if m not in online
                         and m != self.node.node_id)
        return RoomSync(room.name, heads, (peer_id, *offline), room.owner)

    # -- receiving ------------------------------------------------------------------

    def session_ready(self, session: PeerSession) -> None:
        """A session to a peer is up: announce open rooms; bring shared rooms up to date."""
        peer_id = session.peer_id
        for room in list(self.rooms.values()):
            if not room.joined:
                continue
            if room.kind == "open":
                s = room.statements.get(self.node.node_id)
                if s is not None:
                    self.send(peer_id, s)
            if peer_id in room.members():
                self.welcome(room, peer_id)

    def on_message(self, session: PeerSession, message: Message) -> bool:
        """Handle a room control frame; False for frames that are not ours."""
        peer_id = session.peer_id
        if isinstance(message, RoomMember):
            self._on_statement(peer_id, message)
        elif isinstance(message, RoomRoster):
            self._on_roster(peer_id, message)
        elif isinstance(message, RoomTopic):
            self._on_topic(message)
        elif isinstance(message, RoomSync):
            self._on_sync(peer_id, message)
        else:
            return False
        return True

    def _on_statement(self, peer_id: str, s: RoomMember) -> None:
        if not s.verified():
            self.count("room_forged")
            return
        if s.kind == "open":
            self._remember_open(s)
        room = self.rooms.get(s.rid)
        if room is None or not room.joined:
            return
        verdict, change = room.accept_statement(s)
        if verdict is Verdict.REFUSED:
            self.count("room_refused")
            return
        if verdict is Verdict.STALE:
            return
        self._membership.persist(room, s, forget=change.evicted)
        self._members_changed(room, change, "part")
        if change:
            self.tell_members(room, s, skip=frozenset({peer_id, s.member}))
        if s.member in change.joined and s.member != self.node.node_id:
            self.welcome(room, s.member)

    def _remember_open(self, s: RoomMember) -> None:
        """Keep an open room's statement for /rooms and a later /join, within bounds."""
        seen = self.directory.get(s.room)
        if seen is None:
            if len(self.directory) >= MAX_DIRECTORY_ROOMS:
                self.count("room_refused")
                return
            seen = self.directory[s.room] = {}
            self._membership.known_changed()
        held = seen.get(s.member)
        if held is None and len(seen) >= MAX_ROOM_MEMBERS:
            evicted = oldest_parted(seen.values())  # as in Room.accept_statement
            if evicted is None:
                self.count("room_refused")
                return
            del seen[evicted.member]
        if held is None or held.ver < s.ver:
            seen[s.member] = s

    def _on_roster(self, peer_id: str, r: RoomRoster) -> None:
        if not r.verified():
            self.count("room_forged")
            return
        own = self.node.node_id
        room = self.rooms.get(r.rid)
        if room is None or not room.joined:
            # Listed already but not in: this node parted, and only its own /join brings
            # it back. A list that newly names this node is an invitation: kept until the
            # user accepts (/join) or declines it, never joined by itself.
            parted = room is not None and room.roster is not None and own in room.roster.members
            if own in r.members and not parted:
                self._membership.invited(r)
                return
            if own not in r.members:
                self._membership.uninvited(r)
            if room is None:
                self.count("room_refused")
                return
            verdict, _ = room.accept_roster(r)
            if verdict is Verdict.REFUSED:
                self.count("room_refused")
            elif verdict is Verdict.ACCEPTED:
                self._membership.persist(room)
            return
        before = room.members()
        verdict, change = room.accept_roster(r)
        if verdict is Verdict.REFUSED:
            self.count("room_refused")
            return
        if verdict is Verdict.STALE:
            return
        removed = before - room.members()
        if own not in r.members:
            room.joined = False
            self._membership.persist(room)
            self._membership.emit("room_left", room, reason="kicked")
            return
        self._membership.persist(room)
        self._members_changed(room, change, "kicked")
        self.tell_members(room, r, also=removed, skip=frozenset({peer_id}))

    def _on_topic(self, t: RoomTopic) -> None:
        if not t.verified():
            self.count("room_forged")
            return
        room = self.rooms.get(t.rid)
        if room is None or not room.joined:
            return
        if t.ver > time.time() * 1000 + MAX_TOPIC_AHEAD_MS:
            self.count("room_refused")
            return
        verdict = room.accept_topic(t)
        if verdict is Verdict.REFUSED:
            self.count("room_refused")
        if verdict is not Verdict.ACCEPTED:
            return
        self._membership.persist(room)
        self._membership.emit("topic", room, topic=t.topic, by={
            "id": t.by, "nick": clean_received_nick(t.nick, t.by, source="room")})
        self.tell_members(room, t, skip=frozenset({t.by}))

    def _on_sync(self, peer_id: str, y: RoomSync) -> None:
        room = self.rooms.get(y.rid)
        if room is None or not room.joined:
            return
        if peer_id not in room.members():
            self.count("room_refused")
            return
        found = self.node.store.read(
            lambda db: RoomLog.window(db, room.key, dict(y.heads), y.authors, time.time()))
        own = self.node.node_id
        # What is already on its way to this peer is not checked or queued again: a
        # member repeating "I have nothing" costs one answer until the peer acks it.
        in_flight = self.messages.relayed.setdefault(peer_id, set())
        found = [m for m in found if m.msg_id not in in_flight]
        missing = [m for m in found if m.author == own or m.verified()]
        if len(missing) < len(found):  # stored from its author's session, badly signed
            self.count("room_forged", len(found) - len(missing))
        for m in missing:
            if m.msg_id not in self.messages.pending:
                in_flight.add(m.msg_id)
            self.node.queue_frame([peer_id], m)
        if not in_flight:
            del self.messages.relayed[peer_id]
        if missing:
            self.count("room_relayed", len(missing))

    def _members_changed(self, room: Room, change: Change, reason: str) -> None:
        own = self.node.node_id
        view = self._membership.member
        for member in sorted(change.joined - {own}):
            self._membership.emit("member_joined", room, member=view(room, member))
        for member in sorted(change.left - {own}):
            s = room.statements.get(member)
            why = "part" if s is not None and not s.joined else reason
            self._membership.emit("member_left", room, member=view(room, member),
                                  reason=why)

    def ask_gap(self, rid: str, author: str) -> None:
        """An author's message came early: ask the members online for the ones before."""
        room = self.rooms.get(rid)
        if room is None:
            return
        online = {p.id for p in self.node.presence.table.online()}
        heads = tuple(self.log.heads(rid).items())
        for member in room.members() & online:
            self.send(member, RoomSync(room.name, heads, (author,), room.owner))


__all__ = ["Gossip", "RoomMsg"]
