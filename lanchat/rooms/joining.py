"""How rooms are named and how this node comes into one (loop thread).

`RoomNames`: a room whose name another known room shares is shown with whose it is
(`labels.labels`), and typed names resolve to one room or are refused (`labels.find`).
`Joining`: /join of an open room, a new private room, or an invitation the user accepts
(or declines); invitations wait in `invites.Invites`. Both ask the extension through
`Host` to store and show what changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lanchat.api import NodeHost
from lanchat.nicks import placeholder
from lanchat.rooms import views
from lanchat.rooms.authoring import RoomError
from lanchat.rooms.gossip import Gossip
from lanchat.rooms.invites import Invites
from lanchat.rooms.labels import RoomRef, find, labels
from lanchat.rooms.model import Room
from lanchat.rooms.names import parse_ref, room_id, split_id
from lanchat.rooms.wire import RoomMember, RoomRoster


class Host(Protocol):
    """What joining asks of the rooms extension (`extension.Rooms`)."""

    def persist(self, room: Room, *statements: RoomMember,
                forget: RoomMember | None = None) -> None:
        """Store a room's state (and these statements; drop `forget`'s row)."""

    def own_statement(self, room: Room, joined: bool) -> RoomMember:
        """This node's signed statement that it is in the room (or left it)."""

    def announce_joined(self, room: Room, reason: str) -> None:
        """Emit `room_joined`."""

    def emit(self, event: str, room: Room | str, **fields: object) -> None:
        """A room event, with the room as shown and its id."""

    def new_room(self, name: str, private: bool) -> Room:
        """A room this node makes (kept in the rooms)."""

    def view(self, room: Room) -> dict[str, Any]:
        """A joined room as the API shows it."""


class RoomNames:
    """Every room known by name (its own, invitations, open rooms announced), how each is
    shown, and which one a typed name means."""

    def __init__(self, node: NodeHost, rooms: Mapping[str, Room], invites: Invites,
                 directory: Callable[[], Mapping[str, object]]) -> None:
        self.node = node
        self._rooms = rooms
        self._invites = invites
        self._directory = directory
        # room id -> as shown. Built only on the loop (the rooms, invitations and the
        # directory it reads are the loop's); other threads read the last one built.
        self._labels: dict[str, str] = {}
        self._stale = True
        self._relabel_due = False

    def changed(self) -> None:
        """Rooms, invitations, announced names or creators' names changed (any thread):
        the labels are built again on the loop."""
        self._stale = True
        if not self._relabel_due:
            self._relabel_due = True
            self.node.runtime.call_soon(self._relabel)

    def _relabel(self) -> None:
        self._relabel_due = False
        if self._stale:
            self._stale = False
            self._labels = labels(self.refs(), self.node.presence.table.all())

    def creator_nick(self, creator: str, room: Room | None = None) -> str:
        """A creator's name: as the peer table knows it, else as it signed it."""
        peer = self.node.presence.table.get(creator)
        if peer is not None:
            return peer.nick
        if room is not None:
            return views.member(room, creator, self.node.presence.table)["nick"]
        return placeholder(creator)

    def ref(self, room: Room) -> RoomRef:
        """A room as names see it."""
        creator = room.owner
        return RoomRef(room.key, room.name, creator,
                       self.creator_nick(creator, room) if creator else "")

    def invited(self, rid: str, r: RoomRoster) -> RoomRef:
        """An invitation's room as names see it."""
        return RoomRef(rid, r.room, r.creator, self.creator_nick(r.creator))

    def refs(self) -> list[RoomRef]:
        """Every room this node knows of: its rooms, invitations, open rooms announced."""
        refs = {r.key: self.ref(r) for r in self._rooms.values()}
        for rid, invite in self._invites.pending.items():
            refs.setdefault(rid, self.invited(rid, invite.roster))
        for name in self._directory():
            refs.setdefault(name, RoomRef(name, name, "", ""))
        return list(refs.values())

    def label(self, rid: str) -> str:
        """How room `rid` is shown: its name, or `#name (alice#k3f9)` / `#name (open)`
        when another known room has that name (any thread: on the loop it is up to date,
        elsewhere it is the last map the loop built)."""
        if self._stale and self.node.runtime.on_loop():
            self._relabel()
        return self._labels.get(rid) or split_id(rid)[0]

    def find(self, ref: str, among: list[RoomRef]) -> RoomRef:
        """The one room of `among` that `ref` names (labels.find)."""
        return find(ref, among, self.node.presence.table.all())

    def joined(self, ref: str, rooms: Mapping[str, RoomRef], exact: bool) -> str:
        """The id of the joined room (of `rooms`, by id) that `ref` names, or RoomError;
        `exact`: `ref` may be a room's id, as the shell and the web page keep it."""
        if exact and ref in rooms:
            return ref
        try:
            return self.find(ref, list(rooms.values())).id
        except ValueError as exc:
            raise RoomError(str(exc)) from None
        except LookupError as exc:
            if parse_ref(ref)[0] in {r.name for r in rooms.values()}:
                raise RoomError(str(exc)) from None
            raise RoomError(f"you are not in {ref.strip()}; /join {ref.strip()} "
                            "first") from None


class Joining:
    """Coming into rooms and answering invitations (loop thread)."""

    def __init__(self, node: NodeHost, rooms: dict[str, Room], gossip: Gossip,
                 invites: Invites, names: RoomNames, host: Host) -> None:
        self.node = node
        self.rooms = rooms
        self.gossip = gossip
        self.invites = invites
        self.names = names
        self._host = host

    def _prune(self) -> None:
        if self.invites.prune(time.time()):
            self.names.changed()

    def join(self, ref: str, name: str, who: str | None, private: bool) -> dict[str, Any]:
        """Join an open room (created if nobody is in it), accept an invitation to a
        private room, or create a private room of this node's."""
        own = self.node.node_id
        self._prune()
        if private:
            mine = self.rooms.get(room_id(name, own)) or self._host.new_room(name, True)
            return self.enter(mine, "created" if not mine.members() - {own} else "joined")
        # Candidates: invitations of that name, private rooms this node parted and may
        # come back to, and the open room if it is known; typed names resolve as peers do.
        refs = [self.names.ref(r) for r in self.rooms.values()
                if r.name == name and (r.joined or r.kind == "open" or (
                    r.roster is not None and own in r.roster.members))]
        refs += [self.names.invited(rid, i.roster)
                 for rid, i in self.invites.pending.items() if i.roster.room == name]
        if name in self.gossip.directory and name not in self.rooms:
            refs.append(RoomRef(name, name, "", ""))
        try:
            rid = self.names.find(ref, refs).id
        except LookupError as exc:
            if who is not None and who.casefold() != "open":
                raise RoomError(f"{exc}: no invitation from {who}; /invites lists "
                                "them") from None
            if refs and who is None:
                raise RoomError(str(exc)) from None
            rid = name  # an open room nobody announced yet
        invite = self.invites.take(rid)
        room = self.rooms.get(rid)
        if invite is not None:
            self.names.changed()
            room = room or Room(name, "private", invite.roster.creator)
            room.accept_roster(invite.roster)
            return self.enter(room, "invited")
        if room is None:
            if split_id(rid)[1]:
                raise RoomError(f"{name} is private; its creator can /invite you")
            room = self._host.new_room(name, False)
        if room.kind == "open":
            for s in list(self.gossip.directory.get(name, {}).values()):
                room.accept_statement(s)
        return self.enter(room, "created" if not room.members() - {own} else "joined")

    def enter(self, room: Room, reason: str) -> dict[str, Any]:
        """This node is in `room` now: sign it, tell the members, catch up."""
        own = self.node.node_id
        if room.joined:
            raise RoomError(f"you are already in {self.names.label(room.key)}")
        room.joined = True
        mine = self._host.own_statement(room, True)
        _, change = room.accept_statement(mine)
        self._host.persist(room, mine, *room.statements.values(), forget=change.evicted)
        self._host.announce_joined(room, reason)
        if room.kind == "open":
            self.gossip.announce(mine)
        for member in room.members() - {own}:
            self.gossip.send(member, mine)
            self.gossip.welcome(room, member)
        return self._host.view(room)

    def invited(self, r: RoomRoster) -> None:
        """A private room's list newly names this node: ask the user."""
        try:
            invite = self.invites.offer(r, time.time())
        except OverflowError:
            self.gossip.count("room_refused")
            return
        if invite is None:
            return
        self.names.changed()
        peer = self.node.presence.table.get(r.creator)
        self._host.emit("room_invited", r.rid, kind="private", creator=r.creator,
                        by={"id": r.creator, "nick": self.names.creator_nick(r.creator)},
                        trust=self.node.store.peers.trust_of(r.creator),
                        online=peer is not None and peer.online,
                        members=len(r.members), expires=invite.expires)

    def uninvited(self, r: RoomRoster) -> None:
        """A newer list no longer names this node."""
        if self.invites.withdraw(r) is not None:
            self.names.changed()

    def decline(self, ref: str) -> dict[str, Any]:
        """Say no to an invitation: its members are told this node left."""
        self._prune()
        refs = [self.names.invited(rid, i.roster) for rid, i in self.invites.pending.items()]
        try:
            rid = self.names.find(ref, refs).id
        except LookupError as exc:
            raise RoomError(f"{exc}; /invites lists the invitations") from None
        shown = self.names.label(rid)
        r = self.invites.pending.pop(rid).roster
        self.names.changed()
        room = self.rooms.get(rid) or Room(r.room, "private", r.creator, roster=r)
        mine = self._host.own_statement(room, False)
        for member in set(r.members) - {self.node.node_id}:
            self.gossip.send(member, mine)
        return {"room": shown, "room_id": rid}

    def invitations(self) -> list[dict[str, Any]]:
        """Pending invitations: the room, who made it (with trust), members, expiry."""
        self._prune()
        return [{"room": self.names.label(rid), "room_id": rid, "creator": i.roster.creator,
                 "by": {"id": i.roster.creator,
                        "nick": self.names.creator_nick(i.roster.creator)},
                 "trust": self.node.store.peers.trust_of(i.roster.creator),
                 "members": len(i.roster.members), "expires": i.expires}
                for rid, i in sorted(self.invites.pending.items())]
