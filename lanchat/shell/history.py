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
    nick = str(row.get("nick") if row.get("direction") == "in" else row.get("with") or "")
    return peer_id, Kind.DIRECT, state.display(peer_id, nick or peer_id[:8])


def _load_rows(rows: Iterable[dict[str, Any]], buffers: Buffers, state: ShellState,
               skip: set[str], ignored: set[str]) -> None:
    for row in rows:
        incoming = row.get("direction") == "in"
        if incoming and str(row["peer"]) in ignored:
            continue  # /ignore: stored, never shown
        key, kind, name = _place(row, state)
        if key in skip:
            continue
        text = str(row.get("text", ""))
        if incoming:
            sender_id = str(row["peer"])
            nick = state.display(sender_id, str(row.get("nick", "")))
        else:
            sender_id, nick = state.own_id, state.own_nick
        line = Line(render.chat_line(float(row.get("ts", 0.0)), sender_id, nick, text))
        level = (Level.HIGHLIGHT if incoming and mentions(text, state.own_nick)
                 else Level.PRIVATE if kind is Kind.DIRECT else Level.MESSAGE)
        buffers.load(key, kind, name, line, incoming_id=str(row["id"]) if incoming else "",
                     own_id="" if incoming else str(row["id"]), level=level)


def load_scrollback(node: Any, buffers: Buffers, state: ShellState) -> None:
    """Fill every buffer's scrollback and unread count from the store."""
    ignored = {str(p["id"]) for p in node.ignored()}
    done: set[str] = set()
    for view in buffers.views:
        if view.kind is not Kind.DIRECT:
            continue
        try:
            rows = node.history(view.key, SCROLLBACK_LINES * 2)
        except LookupError:  # forgotten since: its buffer shows what the big query has
            continue
        _load_rows((r for r in rows if r.get("to") == "direct" and not r.get("room")),
                   buffers, state, set(), ignored)
        done.add(view.key)
    _load_rows(node.history(None, LOAD_ROWS), buffers, state, done, ignored)
    rooms = rooms_of(node)
    if rooms is not None:
        _load_rooms(rooms, buffers, state, ignored)


def _load_rooms(rooms: Rooms, buffers: Buffers, state: ShellState, ignored: set[str]
                ) -> None:
    """Each joined room's (and each room buffer's) last messages, with delivery counts."""
    names = list(rooms.joined())
    names += [v.key for v in buffers.views if v.kind is Kind.ROOM and v.key not in names]
    for room in names:
        try:
            rows = rooms.history(room, SCROLLBACK_LINES)
        except ValueError:  # a room name that is no longer valid
            continue
        title = rooms.label(room)  # the id's name, and whose it is if another has it
        buffers.ensure(room, Kind.ROOM, title)
        buffers.rename(room, title)
        for row in rows:
            sender = row.get("from") or {}
            sender_id = str(sender.get("id", ""))
            text = str(row.get("text", ""))
            if row.get("direction") == "out":
                fragments = render.chat_line(float(row.get("sent", 0.0)), state.own_id,
                                             state.own_nick, text)
                sent = Sent(str(row["id"]), (), group=True, key=room, text=text,
                            total=int(row.get("of", 0)), acked_before=int(row.get("acked", 0)))
                buffers.load(room, Kind.ROOM, title, Line(fragments, sent), own_id=sent.msg_id)
                continue
            if sender_id in ignored:
                continue
            nick = state.display(sender_id, str(sender.get("nick", "")))
            fragments = render.chat_line(float(row.get("sent", 0.0)), sender_id, nick, text)
            level = Level.HIGHLIGHT if mentions(text, state.own_nick) else Level.MESSAGE
            buffers.load(room, Kind.ROOM, title, Line(fragments), incoming_id=str(row["id"]),
                         level=level)
