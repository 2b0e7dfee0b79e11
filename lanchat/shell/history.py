"""Scrollback at start: each buffer's last lines from the store, through the Node API.

Direct buffers the user had open get their own query (so a quiet conversation keeps its
lines however busy the others were); everything else comes from one query of the latest
messages. Incoming messages after a buffer's saved read marker count as unread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from lanchat.rooms import Rooms, rooms_of
from lanchat.shell import render
from lanchat.shell.buffers import (
    EVERYONE,
    SCROLLBACK_LINES,
    Buffers,
    Kind,
    Level,
    Line,
    Sent,
    mentions,
)
from lanchat.shell.state import ShellState

log = logging.getLogger(__name__)

LOAD_ROWS = 2000  # the latest messages of every conversation, read once at start


def _place(row: dict[str, Any], state: ShellState) -> tuple[str, Kind, str]:
    """The buffer a stored message belongs in."""
    room = row.get("room")
    if room:
        return str(room), Kind.ROOM, str(room)
    if row.get("to") == "broadcast":
        return EVERYONE, Kind.EVERYONE, EVERYONE
    peer_id = str(row["peer"])
    known = state.peer(peer_id)
    name = known.nick if known else str(row.get("with") or row.get("nick") or peer_id[:8])
    if row.get("direction") == "in":
        name = known.nick if known else str(row.get("nick", name))
    return peer_id, Kind.DIRECT, name


def _load_rows(rows: Iterable[dict[str, Any]], buffers: Buffers, state: ShellState,
               skip: set[str], own_nick: str) -> None:
    for row in rows:
        key, kind, name = _place(row, state)
        if key in skip:
            continue
        incoming = row.get("direction") == "in"
        sender_id = str(row["peer"]) if incoming else state.own_id
        text = str(row.get("text", ""))
        line = Line(render.chat_line(float(row.get("ts", 0.0)), sender_id,
                                     str(row.get("nick", "")), text))
        level = (Level.HIGHLIGHT if incoming and mentions(text, own_nick)
                 else Level.PRIVATE if kind is Kind.DIRECT else Level.MESSAGE)
        buffers.load(key, kind, name, line, incoming_id=str(row["id"]) if incoming else "",
                     level=level)


def load_scrollback(node: Any, buffers: Buffers, state: ShellState) -> None:
    """Fill every buffer's scrollback and unread count from the store."""
    own_nick = state.own_nick
    done: set[str] = set()
    for view in buffers.views:
        if view.kind is not Kind.DIRECT:
            continue
        try:
            rows = node.history(view.key, SCROLLBACK_LINES * 2)
        except LookupError:  # forgotten since: its buffer shows what the big query has
            continue
        _load_rows((r for r in rows if r.get("to") == "direct" and not r.get("room")),
                   buffers, state, set(), own_nick)
        done.add(view.key)
    _load_rows(node.history(None, LOAD_ROWS), buffers, state, done, own_nick)
    rooms = rooms_of(node)
    if rooms is not None:
        _load_rooms(rooms, buffers, state, own_nick)


def _load_rooms(rooms: Rooms, buffers: Buffers, state: ShellState, own_nick: str) -> None:
    """Each joined room's (and each room buffer's) last messages, with delivery counts."""
    names = list(rooms.joined())
    names += [v.key for v in buffers.views if v.kind is Kind.ROOM and v.key not in names]
    for room in names:
        try:
            rows = rooms.history(room, SCROLLBACK_LINES)
        except ValueError:  # a room name that is no longer valid
            continue
        buffers.ensure(room, Kind.ROOM, room)
        for row in rows:
            sender = row.get("from") or {}
            sender_id, nick = str(sender.get("id", "")), str(sender.get("nick", ""))
            text = str(row.get("text", ""))
            fragments = render.chat_line(float(row.get("sent", 0.0)), sender_id, nick, text)
            if row.get("direction") == "out":
                sent = Sent(str(row["id"]), (), group=True, key=room, text=text,
                            total=int(row.get("of", 0)), acked_before=int(row.get("acked", 0)))
                buffers.load(room, Kind.ROOM, room, Line(fragments, sent))
                continue
            level = Level.HIGHLIGHT if mentions(text, own_nick) else Level.MESSAGE
            buffers.load(room, Kind.ROOM, room, Line(fragments), incoming_id=str(row["id"]),
                         level=level)
