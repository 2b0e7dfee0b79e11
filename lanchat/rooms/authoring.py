"""What this node signs as a room member: its statements, a private room's list, topics
and messages, each with a version that only grows."""

from __future__ import annotations

import time
from collections.abc import Callable

from lanchat.delivery import new_message_id
from lanchat.identity import Identity
from lanchat.rooms.model import Room
from lanchat.rooms.names import split_id
from lanchat.rooms.wire import RoomMember, RoomMsg, RoomRoster, RoomTopic, sign


class RoomError(ValueError):
    """A room command cannot be done; the message says why."""


def version(old: int) -> int:
    """The next version of a signed frame: the clock in ms, past the last one."""
    return max(old + 1, int(time.time() * 1000))


class Author:
    """Signs this node's room frames with its key and current nick."""

    def __init__(self, identity: Identity, nick: Callable[[], str]) -> None:
        self.identity = identity
        self._nick = nick

    def statement(self, room: Room, joined: bool) -> RoomMember:
        """That this node is in the room (or left it)."""
        held = room.statements.get(self.identity.node_id)
        ident = self.identity
        s = RoomMember(room.name, ident.node_id, ident.key_b64, room.kind, joined,
                       version(held.ver if held else 0), self._nick(), creator=room.owner)
        return sign(s, ident.sign)

    def new_room(self, name: str, private: bool) -> Room:
        """A room this node creates: a private one with a list of one, itself."""
        own = self.identity.node_id
        room = Room(name, "private" if private else "open", own if private else None)
        if private:
            ident = self.identity
            roster = RoomRoster(name, own, ident.key_b64, version(0), (own,))
            room.roster = sign(roster, ident.sign)
        return room

    def roster(self, room: Room, *, add: str = "", drop: str = "") -> RoomRoster:
        """A private room's next list; only its creator may sign one."""
        ident = self.identity
        if room.creator != ident.node_id or room.roster is None:
            raise RoomError(f"only the creator of {room.name} can change who is in it")
        members = [m for m in room.roster.members if m != drop]
        if add and add not in members:
            members.append(add)
        roster = RoomRoster(room.name, ident.node_id, ident.key_b64,
                            version(room.roster.ver), tuple(members))
        return sign(roster, ident.sign)

    def topic(self, room: Room, text: str) -> RoomTopic:
        """A room's new topic."""
        ident = self.identity
        old = room.topic.ver if room.topic else 0
        return sign(RoomTopic(room.name, ident.node_id, ident.key_b64, version(old),
                              self._nick(), text, creator=room.owner), ident.sign)

    def message(self, rid: str, seq: int, text: str) -> RoomMsg:
        """This node's `seq`th message in the room of id `rid`."""
        ident = self.identity
        name, creator = split_id(rid)
        return sign(RoomMsg(name, new_message_id(), ident.node_id, ident.key_b64, seq,
                            int(time.time() * 1000), self._nick(), text, creator=creator),
                    ident.sign)

