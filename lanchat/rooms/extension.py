"""The rooms extension of a node: its start and stop, the rooms it is in, this node's
joins, parts, lists, topics and posts, and the public API the commands and the shell use
(thread-safe: each call runs on the loop). Room messages on the durable path are
`durable.RoomMessages`; frames between members, `gossip.Gossip`, which asks this
extension through `gossip.Membership`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from lanchat.api import NodeHost, PeerSession
from lanchat.delivery import check_text
from lanchat.events import Event
from lanchat.protocol import Message
from lanchat.rooms import views
from lanchat.rooms.authoring import Author, RoomError
from lanchat.rooms.durable import RoomMessages
from lanchat.rooms.gossip import Gossip
from lanchat.rooms.invites import Invites
from lanchat.rooms.joining import Joining, RoomNames
from lanchat.rooms.labels import RoomRef
from lanchat.rooms.model import Room
from lanchat.rooms.names import parse_ref
from lanchat.rooms.storage import RoomLog
from lanchat.rooms.wire import CONTROL_TYPES, RoomMember, RoomRoster, register

log = logging.getLogger(__name__)
T = TypeVar("T")


class Rooms:
    """Node extension: rooms without a server. Public methods are thread-safe."""

    def __init__(self) -> None:
        register()
        self.node: NodeHost = cast(NodeHost, None)
        self.author: Author = cast(Author, None)
        self.log = RoomLog("")
        self.rooms: dict[str, Room] = {}
        self.messages: RoomMessages = cast(RoomMessages, None)
        self.gossip: Gossip = cast(Gossip, None)
        self.invites = Invites()
        self.names: RoomNames = cast(RoomNames, None)
        self.joining: Joining = cast(Joining, None)
        # Rooms are keyed by id (names.room_id). Under _post_lock, for `post`:
        self._my_seq: dict[str, int] = {}  # own last seq per joined room
        self._members: dict[str, tuple[str, ...]] = {}  # joined rooms: the other members
        self._joined: dict[str, RoomRef] = {}  # joined rooms, to resolve typed names
        self._post_lock = threading.Lock()

    # -- extension interface (loop thread) --------------------------------------------

    async def start(self, node: NodeHost) -> None:
        """Open the room tables and load rooms, marks and unacked own messages."""
        self.node = node
        self.author = Author(node.identity, lambda: node.nick)
        self.log = RoomLog(node.node_id)
        self.names = RoomNames(node, self.rooms, self.invites, lambda: self.gossip.directory)
        self.messages = RoomMessages(node, self.log, self.rooms, label=self.names.label,
                                     ask_gap=lambda rid, author: self.gossip.ask_gap(rid, author))
        self.gossip = Gossip(node, self.log, self.rooms, self.messages, self)
        self.joining = Joining(node, self.rooms, self.gossip, self.invites, self.names, self)
        node.add_durable_kind(self.messages)
        node.watch_sessions(self.gossip.session_ready)
        node.subscribe(self._on_event)
        for room in node.store.read(self.log.load):
            self.rooms[room.key] = room
            if room.joined:
                self._members[room.key] = tuple(sorted(room.members() - {node.node_id}))
                self._joined[room.key] = self.names.ref(room)
                self._my_seq[room.key] = self.log.own_seq(room.key)
        own = node.node_id
        self.messages.start()
        for room in self.rooms.values():
            if room.joined:
                self.announce_joined(room, "restored")
                s = room.statements.get(own)
                if room.kind == "open" and s is not None:
                    self.gossip.announce(s)

    def _on_event(self, event: Event) -> None:
        """Event thread: a member came online; reach it on the loop."""
        if event.name == "peer_joined":
            self.node.runtime.call_soon(self._peer_online, event["peer"]["id"])
        if event.name in ("peer_joined", "peer_updated"):
            self.names.changed()  # a creator's name may have changed

    def _peer_online(self, peer_id: str) -> None:
        """Greet a member that is back: the session this opens brings the rooms up to
        date (`session_ready`), so what it or this node missed moves either way."""
        own = self.node.node_id
        for room in self.rooms.values():
            if room.joined and peer_id in room.members() and own in room.statements:
                self.gossip.send(peer_id, room.statements[own])

    async def stop(self) -> None:
        """Stop the gap timer."""
        self.messages.stop()

    @property
    def pending(self) -> dict[str, list[Any]]:
        """Own message id -> [room, members it went to, members that acked]."""
        return self.messages.pending

    @property
    def relayed(self) -> dict[str, set[str]]:
        """Peer -> others' messages relayed to it and not acked yet."""
        return self.messages.relayed

    def stats(self) -> dict[str, Any]:
        """Rooms, members and held messages, for doctor and tests."""
        return {"rooms": {r.key: {"kind": r.kind, "joined": r.joined,
                                  "members": len(r.members())}
                          for r in self.rooms.values()},
                "invites": len(self.invites.pending),
                "held": sum(len(h) for h in self.log.held.values()),
                "pending": len(self.pending), "late": self.log.late}

    def set_nick(self, nick: str) -> None:
        """Statements keep the nick they were signed with; the next one carries the new."""

    # -- gossip ---------------------------------------------------------------------

    def on_message(self, session: PeerSession, message: Message) -> bool:
        """Room control frames (statements, lists, topics, catch-up): see Gossip."""
        return self.gossip.on_message(session, message)

    @property
    def directory(self) -> dict[str, dict[str, RoomMember]]:
        """Open rooms heard of on the LAN: name -> member -> its statement."""
        return self.gossip.directory

    # -- helpers (loop thread) -----------------------------------------------------------

    def persist(self, room: Room, *statements: RoomMember,
                forget: RoomMember | None = None) -> None:
        """Write a room's state (and these statements; drop `forget`'s row), and refresh
        the members `post` reads."""
        own = self.node.node_id
        if room.key not in self.rooms:
            self.rooms[room.key] = room
            self.names.changed()
        with self._post_lock:
            if room.joined:
                self._members[room.key] = tuple(sorted(room.members() - {own}))
                self._joined[room.key] = self.names.ref(room)
                self._my_seq[room.key] = max(self._my_seq.get(room.key, 0),
                                             self.log.own_seq(room.key))
            else:
                self._members.pop(room.key, None)
                self._joined.pop(room.key, None)

        def write(db: Any) -> None:
            RoomLog.save_room(db, room)
            for s in statements:
                RoomLog.save_statement(db, s)
            if forget is not None:
                RoomLog.drop_statement(db, forget)
        self.node.store.transact(write)

    def member(self, room: Room, node_id: str) -> dict[str, str]:
        return views.member(room, node_id, self.node.presence.table)

    def own_statement(self, room: Room, joined: bool) -> RoomMember:
        return self.author.statement(room, joined)

    def emit(self, event: str, room: Room | str, **fields: object) -> None:
        """A room event: `room` as shown (whose, if the name is shared) and its id."""
        rid = room if isinstance(room, str) else room.key
        self.node.emit(event, room=self.label(rid), room_id=rid, **fields)

    def announce_joined(self, room: Room, reason: str) -> None:
        self.emit("room_joined", room, kind=room.kind, creator=room.creator,
                  topic=room.topic.topic if room.topic else "", reason=reason,
                  members=[self.member(room, m) for m in sorted(room.members())])

    def invited(self, r: RoomRoster) -> None:
        """A private room's list newly names this node: see Joining.invited."""
        self.joining.invited(r)

    def uninvited(self, r: RoomRoster) -> None:
        """A newer list no longer names this node: see Joining.uninvited."""
        self.joining.uninvited(r)

    def known_changed(self) -> None:
        """A room name was heard of: how rooms are shown may change."""
        self.names.changed()

    def new_room(self, name: str, private: bool) -> Room:
        """A room this node makes."""
        room = self.author.new_room(name, private)
        self.rooms[room.key] = room
        self.names.changed()
        return room

    def label(self, rid: str) -> str:
        """How room `rid` is shown: its name, or `#name (alice#k3f9)` / `#name (open)`
        when another known room has that name."""
        return self.names.label(rid)

    def _room(self, ref: str, exact: bool = False) -> Room:
        """The joined room `ref` names (loop thread)."""
        with self._post_lock:
            rid = self._resolve(ref, exact)
        return self.rooms[rid]

    def _resolve(self, ref: str, exact: bool) -> str:
        """The id of the joined room `ref` names (under the post lock); `exact`: `ref` may
        be a room id as the shell and the web page keep it."""
        return self.names.joined(ref, self._joined, exact)

    def _call(self, fn: Callable[[], T]) -> T:
        result: T = self.node.runtime.call(fn)
        return result

    # -- public API (any thread) -------------------------------------------------------

    def join(self, name: str, private: bool = False) -> dict[str, Any]:
        """Join an open room (created if nobody is in it), accept an invitation to a
        private room, or create a private room."""
        try:
            canonical, who = parse_ref(name)
        except ValueError as exc:
            raise RoomError(str(exc)) from None
        if private and who is not None:
            raise RoomError("usage: /join #ROOM private (a new room of yours)")
        return self._call(lambda: self.joining.join(name, canonical, who, private))

    def decline(self, name: str) -> dict[str, Any]:
        """Decline an invitation: its creator and members are told this node left."""
        return self._call(lambda: self.joining.decline(name))

    def invitations(self) -> list[dict[str, Any]]:
        """Pending invitations: the room, who made it (with trust), members, expiry."""
        return self._call(self.joining.invitations)

    def part(self, name: str, exact: bool = False) -> dict[str, Any]:
        """Leave a room; members are told."""
        return self._call(lambda: self._part(self._room(name, exact)))

    def _part(self, room: Room) -> dict[str, Any]:
        members = room.members()
        mine = self.own_statement(room, False)
        room.accept_statement(mine)
        room.joined = False
        self.persist(room, mine)
        for member in members - {self.node.node_id}:
            self.gossip.send(member, mine)
        if room.kind == "open":
            self.gossip.announce(mine)
        self.gossip.forget_sync(room.key)
        self.emit("room_left", room, reason="part")
        return {"room": self.label(room.key), "room_id": room.key}

    def post(self, name: str, text: str, exact: bool = False) -> dict[str, Any]:
        """Sign a message and queue it to every member; return its id and recipients.

        Runs on the caller's thread (no loop round trip): the members come from the
        snapshot the loop keeps, and one lock keeps the author's order and the queue's
        order the same. `exact`: `name` may be the room's id (the shell's and the web
        page's target)."""
        check_text(text)
        with self._post_lock:
            rid = self._resolve(name, exact)
            peers = self._members[rid]
            seq = self._my_seq.get(rid, 0) + 1
            self._my_seq[rid] = seq
            msg = self.author.message(rid, seq, text)
            self.messages.posted(msg.msg_id, rid, len(peers))
            self.node.queue_frame(list(peers), msg)
        shown = self.label(rid)
        return {"id": msg.msg_id, "room": shown, "room_id": rid, "to": shown,
                "members": list(peers), "text": text}

    def invite(self, peer_ref: str, name: str) -> dict[str, Any]:
        """Private rooms (the creator): add a peer to the signed list. Open rooms: tell
        the peer about the room."""
        peer = self.node.resolve(peer_ref)
        return self._call(lambda: self._invite(self._room(name), peer))

    def _invite(self, room: Room, peer: dict[str, Any]) -> dict[str, Any]:
        done = {"room": self.label(room.key), "room_id": room.key, "peer": peer["id"]}
        if room.kind == "open":
            mine = room.statements[self.node.node_id]
            self.gossip.send(peer["id"], mine)
            return done
        roster = self.author.roster(room, add=peer["id"])
        room.accept_roster(roster)
        self.persist(room)
        # The invitee gets the list even if it declined before (then it is no member).
        self.gossip.tell_members(room, roster, also=frozenset({peer["id"]}))
        self.emit("member_joined", room, member={"id": peer["id"], "nick": peer["nick"]})
        return done

    def kick(self, peer_ref: str, name: str) -> dict[str, Any]:
        """Private rooms, the creator only: drop a peer from the signed list."""
        peer = self.node.resolve(peer_ref)
        return self._call(lambda: self._kick(self._room(name), peer))

    def _kick(self, room: Room, peer: dict[str, Any]) -> dict[str, Any]:
        if room.kind != "private":
            raise RoomError(f"{room.name} is open: anyone may join it; kick works in "
                            "private rooms")
        if peer["id"] not in room.members():
            raise RoomError(f"{peer['nick']} is not in {room.name}")
        before = room.members()
        roster = self.author.roster(room, drop=peer["id"])
        room.accept_roster(roster)
        self.persist(room)
        self.gossip.tell_members(room, roster, also=before - room.members())
        self.emit("member_left", room, reason="kicked",
                  member={"id": peer["id"], "nick": peer["nick"]})
        return {"room": self.label(room.key), "room_id": room.key, "peer": peer["id"]}

    def set_topic(self, name: str, text: str, exact: bool = False) -> dict[str, Any]:
        """Set a room's topic; every member is told."""
        return self._call(lambda: self._set_topic(self._room(name, exact), text))

    def _set_topic(self, room: Room, text: str) -> dict[str, Any]:
        t = self.author.topic(room, text)
        room.accept_topic(t)
        self.persist(room)
        self.gossip.tell_members(room, t)
        self.emit("topic", room, topic=text,
                  by={"id": self.node.node_id, "nick": self.node.nick})
        return {"room": self.label(room.key), "room_id": room.key, "topic": text}

    def info(self, name: str, exact: bool = False) -> dict[str, Any]:
        """A joined room: kind, creator, topic and members with their nicks."""
        return self._call(lambda: self.view(self._room(name, exact)))

    def view(self, room: Room) -> dict[str, Any]:
        """A joined room as the API shows it (loop thread)."""
        table = self.node.presence.table
        online = {p.id for p in table.online()} | {self.node.node_id}
        return views.room(room, online, table, self.label(room.key))

    def joined(self) -> list[str]:
        """The ids of the rooms this node is in."""
        return self._call(lambda: sorted(r.key for r in self.rooms.values() if r.joined))

    def listing(self) -> list[dict[str, Any]]:
        """Open rooms announced on the LAN (and rooms this node is in), by name."""
        return self._call(lambda: views.listing(self.directory, list(self.rooms.values()),
                                                self.label))

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The last `limit` messages of a room, oldest first (scrollback): id, from, text,
        sent, and for own messages how many members have acked it (`acked` of `of`)."""
        rid = self._call(lambda: name if name in self.rooms else self._room(name).key)
        rows = self.node.store.read(lambda db: RoomLog.history(db, rid, limit))

        def marks() -> dict[str, list[Any]]:
            return {r.msg.msg_id: list(self.pending[r.msg.msg_id]) for r in rows
                    if r.msg.msg_id in self.pending}
        return views.history(rows, self._call(marks), self.node.node_id, self.label(rid))


__all__ = ["CONTROL_TYPES", "RoomError", "Rooms"]
