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
