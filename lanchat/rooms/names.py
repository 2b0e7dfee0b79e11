"""Room names: `#` and a safe name (the nick rule of lanchat.nicks), one canonical form."""

from __future__ import annotations

from lanchat.nicks import check_name

MAX_ROOM_CHARS = 32  # after the '#'
_PUNCT = frozenset("-_.")


def check_room(name: str) -> str:
    """Return the canonical form of room `name` (`#` + the nick rule's normal form,
    case-folded), or raise ValueError saying what a room name may hold."""
    if not isinstance(name, str) or not name.startswith("#"):
        raise ValueError("a room name starts with '#', e.g. #lunch")
    body = check_name(name[1:], what="room name").casefold()
    if len(body) > MAX_ROOM_CHARS or not all(c.isalnum() or c in _PUNCT for c in body):
        raise ValueError(f"a room name is '#' and 1-{MAX_ROOM_CHARS} letters, digits, "
                         "'-', '_' or '.'")
    return "#" + body


def is_room(ref: str) -> bool:
    """True if `ref` names a room rather than a peer."""
    return ref.startswith("#")


# -- a room's id, and typed room names -----------------------------------------------
#
# An open room is its name. A private room is its name and its creator's key: two
# private rooms of the same name from different creators are two rooms. Its id is
# `#name@CREATORID`; '@' is never in a name.

OPEN = "open"  # `#name@open`: the open room of that name


def room_id(name: str, creator: str | None) -> str:
    """A room's id: the name of an open room, `name@creator` of a private one."""
    return f"{name}@{creator}" if creator else name


def split_id(rid: str) -> tuple[str, str]:
    """(name, creator) of a room id; creator '' for an open room."""
    name, _, creator = rid.partition("@")
    return name, creator


def parse_ref(ref: str) -> tuple[str, str | None]:
    """A typed room: `#name`, `#name@WHO` or the on-screen `#name (WHO)`, where WHO is the
    creator (a nick, nick#prefix, an id or its prefix) or `open`. Returns the canonical
    name and WHO (None if not given); raises ValueError for a bad name."""
    ref = ref.strip()
    who: str | None = None
    if ref.endswith(")") and " (" in ref:
        ref, _, who = ref[:-1].partition(" (")
    elif "@" in ref:
        ref, _, who = ref.partition("@")
    if who is not None:
        who = who.strip()
        if not who:
            raise ValueError("name the room's creator after '@', e.g. #team@alice")
    return check_room(ref.strip()), who
