"""Room tables in the node's SQLite database, and the author-order rule for showing.

`room_log` holds every room message this node has (its own, received, relayed), keyed
(room, author, author's seq), so a copy that arrives twice, from the author or from any
member, is stored once. A message is shown (its `message` event) only when every earlier
message of its author in that room was: one that arrives early is held (stored, acked,
`shown=0`) until the gap is filled, or until `durable.GAP_WAIT_S` says the gap cannot be filled.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lanchat.protocol import Message
from lanchat.rooms.model import Room
from lanchat.rooms.names import split_id
from lanchat.rooms.wire import RoomMember, RoomMsg, RoomRoster, RoomTopic

# Catch-up window: what a member sends another that missed it, per room.
WINDOW_MESSAGES = 10_000
WINDOW_S = 7 * 24 * 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,       -- the room's id (names.room_id)
    kind TEXT NOT NULL,
    creator TEXT,
    joined INTEGER NOT NULL,
    roster TEXT,                 -- the creator's signed list (JSON frame), private rooms
    topic TEXT,                  -- the latest signed topic (JSON frame)
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS room_members (
    room TEXT NOT NULL,          -- the room's id, here and in room_log
    member TEXT NOT NULL,
    statement TEXT NOT NULL,     -- the member's own signed statement (JSON frame)
    PRIMARY KEY (room, member)
);
CREATE TABLE IF NOT EXISTS room_log (
    seq INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    author TEXT NOT NULL,
    aseq INTEGER NOT NULL,       -- the author's sequence in the room
    id TEXT NOT NULL,
    ts INTEGER NOT NULL,         -- ms, the author's clock
    nick TEXT NOT NULL,
    text TEXT NOT NULL,
    key TEXT NOT NULL,
    sig TEXT NOT NULL,
    shown INTEGER NOT NULL,      -- 0 while held for an earlier message of its author
    recipients INTEGER NOT NULL DEFAULT 0,  -- own messages: members it was sent to
    stored REAL NOT NULL,
    UNIQUE (room, author, aseq)
);
CREATE INDEX IF NOT EXISTS room_log_room ON room_log (room, seq);
-- A private room is (name, creator): its rows are keyed by its id, `#name@CREATOR`.
-- Rows written before that were keyed by the name alone (idempotent: runs at each start).
UPDATE room_members SET room = room || '@' || (SELECT creator FROM rooms
    WHERE rooms.name = room_members.room) WHERE room IN (SELECT name FROM rooms
    WHERE kind = 'private' AND creator IS NOT NULL AND instr(name, '@') = 0);
UPDATE room_log SET room = room || '@' || (SELECT creator FROM rooms
    WHERE rooms.name = room_log.room) WHERE room IN (SELECT name FROM rooms
    WHERE kind = 'private' AND creator IS NOT NULL AND instr(name, '@') = 0);
UPDATE rooms SET name = name || '@' || creator
    WHERE kind = 'private' AND creator IS NOT NULL AND instr(name, '@') = 0;
"""

_COLS = "room, id, author, key, aseq, ts, nick, text, sig"
Key = tuple[str, str]  # (room id, author)


def _msg(row: Sequence[object]) -> RoomMsg:
    r = list(row)
    name, creator = split_id(str(r[0]))
    return RoomMsg(name, str(r[1]), str(r[2]), str(r[3]), int(str(r[4])),
                   int(str(r[5])), str(r[6]), str(r[7]), str(r[8]), creator)


@dataclass(frozen=True)
class LogRow:
    """One stored room message, for scrollback."""

    msg: RoomMsg
    recipients: int  # own messages: members it was sent to


class RoomLog:
    """The room tables and the hold-back state (loop thread, or inside a store call)."""

    def __init__(self, own_id: str) -> None:
        self.own_id = own_id
        self.next: dict[Key, int] = {}  # next author seq to show
        self.held: dict[Key, set[int]] = {}
        self.held_since: dict[Key, float] = {}
        self.late = 0  # new messages below an author's mark (after a gap was given up)

    # -- loading ----------------------------------------------------------------------

    def load(self, db: sqlite3.Connection) -> list[Room]:
        """Read rooms, statements and the hold-back state."""
        rooms: dict[str, Room] = {}
        for rid, kind, creator, joined, roster, topic in db.execute(
                "SELECT name, kind, creator, joined, roster, topic FROM rooms"):
            room = Room(split_id(rid)[0], kind, creator, bool(joined))
            if roster:
                room.roster = RoomRoster.from_dict(json.loads(roster))
            if topic:
                room.topic = RoomTopic.from_dict(json.loads(topic))
            rooms[rid] = room
        for rid, statement in db.execute("SELECT room, statement FROM room_members"):
            if rid in rooms:
                s = RoomMember.from_dict(json.loads(statement))
                rooms[rid].statements[s.member] = s
        self.next.clear()
        self.held.clear()
        for room, author, top in db.execute(
                "SELECT room, author, max(aseq) FROM room_log WHERE shown=1"
                " GROUP BY room, author"):
            self.next[(room, author)] = int(top) + 1
        now = time.monotonic()
        for room, author, aseq in db.execute(
                "SELECT room, author, aseq FROM room_log WHERE shown=0"):
            self.held.setdefault((room, author), set()).add(int(aseq))
            self.held_since.setdefault((room, author), now)
        return list(rooms.values())

    def own_seq(self, room: str) -> int:
        """The last seq this node used in `room`."""
        return self.next.get((room, self.own_id), 1) - 1

    # -- rooms and statements (in a transaction) ------------------------------------

    @staticmethod
    def save_room(db: sqlite3.Connection, room: Room) -> None:
        """Write a room's own row (kind, creator, joined, list, topic)."""
        db.execute(
            "INSERT INTO rooms (name, kind, creator, joined, roster, topic, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind=excluded.kind,"
            " creator=excluded.creator, joined=excluded.joined, roster=excluded.roster,"
            " topic=excluded.topic",
            (room.key, room.kind, room.creator, int(room.joined),
             json.dumps(room.roster.to_dict()) if room.roster else None,
             json.dumps(room.topic.to_dict()) if room.topic else None, time.time()))

    @staticmethod
    def save_statement(db: sqlite3.Connection, s: RoomMember) -> None:
        """Write a member's latest statement."""
        db.execute("INSERT OR REPLACE INTO room_members (room, member, statement)"
                   " VALUES (?, ?, ?)", (s.rid, s.member, json.dumps(s.to_dict())))

    @staticmethod
    def drop_statement(db: sqlite3.Connection, s: RoomMember) -> None:
        """Forget a member's statement (a parted member, to make room for a new one)."""
        db.execute("DELETE FROM room_members WHERE room=? AND member=?", (s.rid, s.member))

    # -- the durable path (inside the group commit) ----------------------------------

    def store_in(self, db: sqlite3.Connection, items: list[tuple[str, Message]],
                 now: float) -> list[tuple[str, Message]]:
        """Store received copies; return those to show now, in author order."""
        shown: list[tuple[str, Message]] = []
        touched: set[Key] = set()
        for peer, m in items:
            assert isinstance(m, RoomMsg)
            key = (m.rid, m.author)
            nxt = self.next.get(key, 1)
            show = m.seq <= nxt
            cur = db.execute(
                f"INSERT OR IGNORE INTO room_log ({_COLS}, shown, stored)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m.rid, m.msg_id, m.author, m.key, m.seq, m.ts, m.nick, m.text, m.sig,
                 int(show), now))
            if cur.rowcount != 1:
                continue
            if not show:
                self.held.setdefault(key, set()).add(m.seq)
                self.held_since.setdefault(key, time.monotonic())
                continue
            if m.seq < nxt:
                self.late += 1
            else:
                self.next[key] = nxt + 1
                touched.add(key)
            shown.append((peer, m))
        for key in touched:
            shown.extend(("", m) for m in self._release(db, key))
        return shown

    def _release(self, db: sqlite3.Connection, key: Key) -> list[RoomMsg]:
        """Show held messages that are next in their author's order."""
        held = self.held.get(key)
        out: list[RoomMsg] = []
        while held and self.next.get(key, 1) in held:
            seq = self.next[key]
            held.discard(seq)
            db.execute("UPDATE room_log SET shown=1 WHERE room=? AND author=? AND aseq=?",
                       (key[0], key[1], seq))
            row = db.execute(f"SELECT {_COLS} FROM room_log WHERE room=? AND author=?"
                             " AND aseq=?", (key[0], key[1], seq)).fetchone()
            out.append(_msg(row))
            self.next[key] = seq + 1
        if not held:
            self.held.pop(key, None)
            self.held_since.pop(key, None)
        else:
            self.held_since[key] = time.monotonic()
        return out

    def give_up(self, db: sqlite3.Connection, key: Key) -> list[RoomMsg]:
        """The gap before `key`'s held messages cannot be filled: show from the first."""
        held = self.held.get(key)
        if not held:
            return []
        self.next[key] = min(held)
        return self._release(db, key)

    def store_out(self, db: sqlite3.Connection, items: list[tuple[Sequence[str], Message]],
                  now: float) -> None:
        """Store own messages (relayed copies are already here)."""
        rows = []
        for peers, m in items:
            assert isinstance(m, RoomMsg)
            if m.author == self.own_id:
                key = (m.rid, m.author)
                self.next[key] = max(self.next.get(key, 1), m.seq + 1)
                rows.append((m.rid, m.msg_id, m.author, m.key, m.seq, m.ts, m.nick, m.text,
                             m.sig, 1, len(peers), now))
        if rows:
            db.executemany(f"INSERT OR IGNORE INTO room_log ({_COLS}, shown, recipients,"
                           " stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # -- reads ------------------------------------------------------------------------

    def heads(self, room: str) -> dict[str, int]:
        """Per author, the last seq shown in `room` (its contiguous mark)."""
        return {a: n - 1 for (r, a), n in self.next.items() if r == room}

    @staticmethod
    def window(db: sqlite3.Connection, room: str, heads: dict[str, int],
               authors: Iterable[str] | None, now: float) -> list[RoomMsg]:
        """What a member with `heads` lacks of `room`, within the catch-up window, in
        author order."""
        wanted = None if authors is None else set(authors)
        rows = db.execute(
            f"SELECT {_COLS} FROM room_log WHERE room=? AND ts>=? ORDER BY seq DESC LIMIT ?",
            (room, int((now - WINDOW_S) * 1000), WINDOW_MESSAGES)).fetchall()
        out = [_msg(r) for r in rows
               if (wanted is None or r[2] in wanted) and int(r[4]) > heads.get(r[2], 0)]
        out.sort(key=lambda m: (m.author, m.seq))
        return out

    @staticmethod
    def history(db: sqlite3.Connection, room: str, limit: int) -> list[LogRow]:
        """The last `limit` shown messages of `room`, oldest first, with delivery counts."""
        rows = db.execute(
            f"SELECT {_COLS}, recipients FROM room_log WHERE room=? AND shown=1"
            " ORDER BY seq DESC LIMIT ?", (room, limit)).fetchall()
        return [LogRow(_msg(r[:9]), int(r[9])) for r in reversed(rows)]

    @staticmethod
    def pending_own(db: sqlite3.Connection, own_id: str) -> dict[str, tuple[str, int, int]]:
        """Own room messages some member has not acked: id -> (room, recipients, pending)."""
        rows = db.execute(
            "SELECT l.id, l.room, l.recipients, count(*) FROM outbox o JOIN room_log l"
            " ON l.id=o.msg_id AND l.author=? GROUP BY l.id", (own_id,)).fetchall()
        return {str(i): (str(r), int(n), int(p)) for i, r, n, p in rows}

    @staticmethod
    def relayed_queued(db: sqlite3.Connection, own_id: str) -> dict[str, set[str]]:
        """Others' room messages queued to a peer and not yet acked: peer -> ids."""
        out: dict[str, set[str]] = {}
        for peer, msg_id in db.execute(
                "SELECT DISTINCT o.peer, o.msg_id FROM outbox o JOIN room_log l"
                " ON l.id=o.msg_id AND l.author!=?", (own_id,)):
            out.setdefault(str(peer), set()).add(str(msg_id))
        return out
