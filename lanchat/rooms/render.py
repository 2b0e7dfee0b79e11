"""Human lines for room events (text mode; the shell may use them too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lanchat.naming import mark
from lanchat.text import safe_line, safe_text

ROOM_EVENTS = ("room_joined", "room_left", "member_joined", "member_left", "topic",
               "room_invited")


def invitation_line(f: Mapping[str, Any]) -> str:
    """An invitation (a `room_invited` event or an /invites row) as the user reads it:
    who with its trust mark, the room, how to answer."""
    room = safe_line(str(f["room"]))
    creator = str(f["creator"])
    by = safe_line(str(f["by"]["nick"])) + mark(f.get("trust"))
    if not f.get("trust"):
        by += " (never met)"
    typed = room if " (" not in room else f"{room.partition(' (')[0]}@{creator[:8]}"
    return (f"-- {by} [{creator[:8]}] invites you to the private room {room} "
            f"({f['members']} listed): /join {typed} to accept, /invites decline {typed} to say no")


def describe_room(name: str, f: Mapping[str, Any]) -> str | None:
    """One line for a room event; every peer-made string is made safe."""
    room = safe_line(str(f["room"]))
    if name == "room_joined":
        nicks = ", ".join(safe_line(m["nick"]) for m in f["members"])
        topic = f" - {safe_text(f['topic'])}" if f["topic"] else ""
        return f"-- you are in {room} ({f['kind']}, {f['reason']}): {nicks}{topic}"
    if name == "room_left":
        return f"-- you left {room} ({f['reason']})"
    if name == "member_joined":
        return f"-- {safe_line(f['member']['nick'])} joined {room}"
    if name == "member_left":
        return f"-- {safe_line(f['member']['nick'])} left {room} ({f['reason']})"
    if name == "room_invited":
        return invitation_line(f)
    if name == "topic":
        return f"-- {room} topic by {safe_line(f['by']['nick'])}: {safe_text(f['topic'])}"
    return None
