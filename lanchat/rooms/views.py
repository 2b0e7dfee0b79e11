"""Rooms as the API shows them: members with their nicks, a room, the listing, history
items. Pure functions of the extension's state (read on the loop thread)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from lanchat.nicks import clean_received_nick, placeholder
from lanchat.peers import PeerTable
from lanchat.rooms.model import Room
from lanchat.rooms.storage import LogRow
from lanchat.rooms.wire import RoomMember


def member(room: Room, node_id: str, table: PeerTable) -> dict[str, str]:
    """A member's id and nick: as its statement says, else as the peer table knows it."""
    nick = room.nick_of(node_id)
    if nick is None:
        peer = table.get(node_id)
        return {"id": node_id, "nick": peer.nick if peer is not None
                else placeholder(node_id)}
    return {"id": node_id, "nick": clean_received_nick(nick, node_id, source="room")}


def room(r: Room, online: Collection[str], table: PeerTable, shown: str) -> dict[str, Any]:
    """A joined room (`shown` as the screen names it, `room_id` its id): kind, creator,
    topic and members with their nicks, online or not."""
    return {"room": shown, "room_id": r.key, "kind": r.kind, "creator": r.creator,
            "topic": r.topic.topic if r.topic else "",
            "members": [{**member(r, m, table), "online": m in online}
                        for m in sorted(r.members())]}


def listing(directory: Mapping[str, Mapping[str, RoomMember]], rooms: Collection[Room],
            label: Callable[[str], str]) -> list[dict[str, Any]]:
    """Open rooms announced on the LAN (and rooms this node is in), by name; `room` as
    shown (whose it is, if another has that name), `room_id` its id."""
    out: dict[str, dict[str, Any]] = {}
    for name, seen in directory.items():
        n = sum(1 for s in seen.values() if s.joined)
        if n:
            out[name] = {"room": label(name), "room_id": name, "kind": "open",
                         "creator": None, "members": n, "joined": False, "topic": ""}
    for r in rooms:
        if r.joined:
            out[r.key] = {"room": label(r.key), "room_id": r.key, "kind": r.kind,
                          "creator": r.creator, "members": len(r.members()),
                          "joined": True, "topic": r.topic.topic if r.topic else ""}
    return [out[k] for k in sorted(out)]


def history(rows: list[LogRow], pending: Mapping[str, list[Any]],
            own: str, shown: str) -> list[dict[str, Any]]:
    """Stored room messages: id, from, text, sent, and for own messages how many members
    have acked it (`acked` of `of`; `pending` holds [room, of, acked] of those still out)."""
    out = []
    for r in rows:
        m = r.msg
        item: dict[str, Any] = {"id": m.msg_id, "room": shown, "room_id": m.rid,
                                "text": m.text,
                                "from": {"id": m.author, "nick": clean_received_nick(
                                    m.nick, m.author, source="room")},
                                "sent": m.ts / 1000, "direction":
                                "out" if m.author == own else "in"}
        if m.author == own:
            entry = pending.get(m.msg_id)
            item["of"] = r.recipients
            item["acked"] = entry[2] if entry else r.recipients
        out.append(item)
    return out
