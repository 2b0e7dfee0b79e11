"""Rooms on screen and typed: a room whose name another known room shares says whose it
is (`#team (alice#k3f9)`, `#team (open)`), and a typed room name means exactly one room or
is refused with the candidates listed, as peer names are (lanchat.naming). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lanchat.naming import AmbiguousName, NameIndex, resolve
from lanchat.rooms.names import OPEN, parse_ref
from lanchat.text import safe_line


@dataclass(frozen=True)
class RoomRef:
    """A room this node knows of (joined, parted, invited to, or announced)."""

    id: str
    name: str
    creator: str  # '' for an open room
    nick: str  # the creator's name ('' for an open room)

    @property
    def kind(self) -> str:
        """'open' or 'private'."""
        return "private" if self.creator else "open"


class AmbiguousRoom(LookupError):
    """More than one known room goes by a typed name; the message lists them."""

    def __str__(self) -> str:
        return str(self.args[0])


def labels(refs: Iterable[RoomRef], known: Iterable[Any]) -> dict[str, str]:
    """Room id -> how the room is shown: its name, or, when another known room has the
    same name, the name and whose it is (the creator's name with its id suffix)."""
    rooms = list(refs)
    by_name: dict[str, list[RoomRef]] = {}
    for r in rooms:
        by_name.setdefault(r.name, []).append(r)
    out = {r.id: r.name for r in rooms}
    shared = [r for same in by_name.values() if len(same) > 1 for r in same]
    if shared:
        index = NameIndex([*known, *({"id": r.creator, "nick": r.nick}
                                     for r in shared if r.creator)])
        for r in shared:
            out[r.id] = f"{r.name} ({whose(r, index)})"
    return out


def whose(r: RoomRef, index: NameIndex) -> str:
    """`open`, or the creator as `nick#suffix`."""
    if not r.creator:
        return OPEN
    return f"{safe_line(r.nick)}#{index.suffix(r.creator)}"


def find(ref: str, refs: Iterable[RoomRef], known: Iterable[Any] = ()) -> RoomRef:
    """The one room among `refs` that `ref` names: `#name` if no other has that name,
    `#name@WHO` or `#name (WHO)` (WHO: `open`, or the creator as a nick, nick#prefix or
    id). Raises ValueError (bad name), AmbiguousRoom or LookupError, each with a message
    for the user."""
    name, who = parse_ref(ref)
    same = [r for r in refs if r.name == name]
    if who is not None:
        if who.casefold() == OPEN:
            same = [r for r in same if not r.creator]
        else:
            private = [r for r in same if r.creator]
            exact = [r for r in private if r.creator == who]
            if exact:
                return exact[0]
            creators = [{"id": r.creator, "nick": r.nick} for r in private]
            try:
                creator = resolve(who, creators)
            except AmbiguousName as exc:  # several creators: listed below
                ids = {c.id for c in exc.candidates}
                same = [r for r in private if r.creator in ids]
            except LookupError:
                same = []
            else:
                same = [r for r in private if r.creator == creator["id"]]
    if len(same) == 1:
        return same[0]
    if not same:
        raise LookupError(f"no room {safe_line(ref.strip())!r} known")
    index = NameIndex([*known, *({"id": r.creator, "nick": r.nick}
                                 for r in same if r.creator)])
    lines = "\n".join(f"  {r.name}@{whose(r, index)}  ({r.kind}"
                      + (f", made by {safe_line(r.nick)} {r.creator[:16]})" if r.creator
                         else ")") for r in same)
    raise AmbiguousRoom(f"{len(same)} rooms go by {safe_line(name)!r}; nothing was done. "
                        f"Name one as #ROOM@WHO:\n{lines}")
