"""Human lines for room events (text mode; the shell may use them too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lanchat.text import safe_line, safe_text

ROOM_EVENTS = ("room_joined", "room_left", "member_joined", "member_left", "topic")


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
    if name == "topic":
        return f"-- {room} topic by {safe_line(f['by']['nick'])}: {safe_text(f['topic'])}"
    return None
