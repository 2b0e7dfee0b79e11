"""Rooms without a server: signed room messages on the durable path, membership that
members tell each other, catch-up from whichever member has what was missed.

`attach(node)` adds the extension before `node.start()`; `lanchat.rooms.commands` is the
plugin with /join, /part, /invite, /kick, /topic, /names and /rooms (and `/msg #room`).
"""

from __future__ import annotations

from typing import Any

from lanchat.rooms.extension import RoomError, Rooms
from lanchat.rooms.names import check_room, is_room

__all__ = ["RoomError", "Rooms", "attach", "check_room", "is_room", "rooms_of"]


def attach(node: Any) -> Rooms:
    """Add the rooms extension to a node that is not started yet."""
    rooms = Rooms()
    node.add_extension(rooms)
    return rooms


def rooms_of(node: object) -> Rooms | None:
    """The node's rooms extension, if attached."""
    for ext in getattr(node, "extensions", ()):
        if isinstance(ext, Rooms):
            return ext
    return None
