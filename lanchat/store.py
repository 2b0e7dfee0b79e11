"""SQLite state of one node: history, the outbox of unacked messages, the search index.

The connections and their locks are `lanchat.database`'s; what is kept of peers (trust,
pins, /ignore) is `Store.peers` (`lanchat.peer_store`). A message is acked only after a
commit that is durable. Callers batch (group commit): one transaction stores everything
read in one loop turn.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from lanchat import peer_store
from lanchat.database import SCHEMA_VERSION, Database, StoreError
from lanchat.peer_store import KnownPeer, PeerStore
from lanchat.protocol import Chat, Message

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "DurableKind", "HistoryRow", "KnownPeer", "Received", "Store",
           "StoreError"]

DB_FILE = "lanchat.db"
OUTBOX_PAGE = 512
INDEX_CHUNK = 500  # messages added to the search index per write transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    peer TEXT NOT NULL,          -- the other side's node id; '*' for my broadcasts
    direction TEXT NOT NULL,     -- 'in' or 'out'
    broadcast INTEGER NOT NULL,
    nick TEXT NOT NULL,
    text TEXT NOT NULL,
    ts REAL NOT NULL,
    stored REAL NOT NULL,
    UNIQUE (peer, direction, id)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: sessions send rows after a seq
    msg_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    UNIQUE (peer, msg_id)
);
CREATE INDEX IF NOT EXISTS outbox_peer ON outbox (peer, seq);
"""

# Full-text search over the history (external content: the text is stored once). Rows are
# indexed when a search runs, not on insert, so the message path pays nothing for it; the
# indexing runs on its own connection in short transactions (`INDEX_CHUNK` rows), so a
# commit waits at most one chunk, never the whole backlog.
_FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    text, content='messages', content_rowid='seq', tokenize='unicode61 remove_diacritics 2');
DROP TRIGGER IF EXISTS messages_fts_add;
DROP TRIGGER IF EXISTS messages_fts_del;
"""


class Received(NamedTuple):
    """A message as it arrived: the session's proven peer and nick, the accepted time."""

    peer: str
    nick: str
    ts: float
    msg: Message  # a Chat, or a frame of a durable kind (add_kind)


# Times a row may carry; anything else (1e300, NaN, from older versions or a forged send
# time) is read as the time the row was stored.
_SANE_TS = (0.0, 1e11)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _row(r: Sequence[Any]) -> HistoryRow:
    """A stored row as history: a time that cannot be shown is the time it was stored."""
    ts = r[6]
    if not isinstance(ts, int | float) or not _SANE_TS[0] <= ts <= _SANE_TS[1]:
        stored = r[7]
        ts = stored if isinstance(stored, int | float) and (
            _SANE_TS[0] <= stored <= _SANE_TS[1]) else 0.0
    seq = r[8] if len(r) > 8 and isinstance(r[8], int) else 0
    return HistoryRow(_text(r[0]), _text(r[1]), _text(r[2]), bool(r[3]), _text(r[4]),
                      _text(r[5]), float(ts), seq)


class DurableKind(Protocol):
    """A capability's durable frames (e.g. room messages): its tables, and what it stores
    inside the group-commit transaction, so its frames are acked only once durable too."""

    types: tuple[type[Message], ...]
    schema: str

    def store_in(self, db: sqlite3.Connection, items: list[tuple[str, Message]],
                 now: float) -> list[tuple[str, Message]]:
        """Store received (peer id, frame) pairs; return those to show now."""

    def store_out(self, db: sqlite3.Connection, items: list[tuple[Sequence[str], Message]],
                  now: float) -> None:
        """Store frames being sent (the outbox rows are the store's)."""


@dataclass(frozen=True)
class HistoryRow:
    """One stored chat message, either direction."""

    id: str
    peer: str
    direction: str
    broadcast: bool
    nick: str
    text: str
    ts: float
    seq: int = 0  # order of storage here: the cursor for `history(before=...)`


class Store:
    """History, outbox and search index over one `Database` (any thread may call), and
    the node's `PeerStore` as `peers`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._kinds: dict[type[Message], DurableKind] = {}
        self.searchable = False
        self._database = Database(path, self._create)
        self._db = self._database.writer
        self._lock = self._database.lock
        self.peers = PeerStore(self._database)

    def _create(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)
        peer_store.create(db)
        try:
            db.executescript(_FTS)
        except sqlite3.OperationalError:
            return  # this SQLite has no FTS5: search scans
        self.searchable = True

    def index_new(self) -> int:
        """Add the messages stored since the last search to the full-text index, on the
        indexer's connection, `INDEX_CHUNK` rows per transaction; return how many."""
        added = 0
        with self._database.index_lock:
            db = self._database.indexer
            top = db.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
            while True:
                with self._database.gate(commit=False):
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        row = db.execute(
                            "SELECT value FROM meta WHERE key='fts_seq'").fetchone()
                        done = int(row[0]) if row else 0
                        upto = min(top, done + INDEX_CHUNK)
                        if upto > done:
                            db.execute("INSERT INTO messages_fts (rowid, text) SELECT seq,"
                                       " text FROM messages WHERE seq > ? AND seq <= ?",
                                       (done, upto))
                            db.execute("INSERT OR REPLACE INTO meta VALUES ('fts_seq', ?)",
                                       (str(upto),))
                        db.execute("COMMIT")
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                if upto <= done:
                    return added
                added += upto - done

    def close(self) -> None:
        """Close the connections."""
        self._database.close()

    # -- messages ---------------------------------------------------------------------

    def add_kind(self, kind: DurableKind) -> None:
        """Create a durable kind's tables and store its frames in `commit_batch`."""
        with self._lock:
            self._db.executescript(kind.schema)
            for cls in kind.types:
                self._kinds[cls] = kind

    def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(db)` in one durable transaction (an extension's own tables)."""
        return self._database.transact(fn)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(db)` on the read-only connection (an extension's queries)."""
        return self._database.read(fn)

    def commit_batch(
        self,
        incoming: Sequence[Received],
        outgoing: Sequence[tuple[Sequence[str], Message, bytes]],
        acked: Sequence[tuple[str, Sequence[str]]] = (),
        before_commit: Callable[[], None] | None = None,
    ) -> tuple[list[tuple[Received, int]], list[tuple[str, str]]]:
        """Store one batch in one durable transaction.

        `incoming`: messages received, with the authenticated sender and its nick as the
        session knows them (never the frame's own claim) and the send time as accepted;
        `outgoing`: (peer ids, message, frame payload) to send; `acked`: (peer id, message
        ids) the peers confirmed. Chat messages go to `messages`; other durable frames to
        their kind (`add_kind`), whose new ones come back with seq 0.
        `before_commit` runs once the rows are written, before COMMIT waits for the disk;
        this connection already sees the new outbox rows (`outbox_after`), so a sender can
        put them on the wire meanwhile. Nothing may be acked there: an ack follows the
        commit. Returns the incoming messages that were new (not duplicates) with their
        history seq, and the (peer, id) pairs that left the outbox.
        """
        with self._database.gate(commit=True):
            return self._commit_batch(incoming, outgoing, acked, before_commit)

    def _commit_batch(
        self,
        incoming: Sequence[Received],
        outgoing: Sequence[tuple[Sequence[str], Message, bytes]],
        acked: Sequence[tuple[str, Sequence[str]]],
        before_commit: Callable[[], None] | None,
    ) -> tuple[list[tuple[Received, int]], list[tuple[str, str]]]:
        now = time.time()
        fresh: list[tuple[Received, int]] = []
        done: list[tuple[str, str]] = []
        chats_in = [item for item in incoming if isinstance(item.msg, Chat)]
        chats_out = [(ps, m) for ps, m, _ in outgoing if isinstance(m, Chat)]
        kinds_in: dict[int, tuple[DurableKind, list[tuple[str, Message]]]] = {}
        kinds_out: dict[int, tuple[DurableKind, list[tuple[Sequence[str], Message]]]] = {}
        for item in incoming:
            if not isinstance(item.msg, Chat):
                kind = self._kinds[type(item.msg)]
                kinds_in.setdefault(id(kind), (kind, []))[1].append((item.peer, item.msg))
        for peers, msg, _ in outgoing:
            if not isinstance(msg, Chat):
                kind = self._kinds[type(msg)]
                kinds_out.setdefault(id(kind), (kind, []))[1].append((peers, msg))
        with self._lock:
            db = self._db
            # Only deletions of acked rows: losing them to a power cut means a resend that
            # the peer drops as a duplicate, so that commit need not wait for the disk.
            self._database.durable(bool(incoming or outgoing))
            db.execute("BEGIN IMMEDIATE")
            try:
                for item in chats_in:
                    msg = item.msg
                    assert isinstance(msg, Chat)
                    cur = db.execute(
                        "INSERT OR IGNORE INTO messages (id, peer, direction, broadcast, nick,"
                        " text, ts, stored) VALUES (?, ?, 'in', ?, ?, ?, ?, ?)",
                        (msg.msg_id, item.peer, msg.broadcast, item.nick, msg.text, item.ts,
                         now))
                    if cur.rowcount == 1:
                        fresh.append((item, int(cur.lastrowid or 0)))
                for kind, items in kinds_in.values():
                    fresh.extend((Received(p, "", now, m), 0)
                                 for p, m in kind.store_in(db, items, now))
                if chats_out:
                    db.executemany(
                        "INSERT OR IGNORE INTO messages (id, peer, direction, broadcast, nick,"
                        " text, ts, stored) VALUES (?, ?, 'out', ?, ?, ?, ?, ?)",
                        [(m.msg_id, "*" if m.broadcast else peers[0], m.broadcast,
                          m.nick, m.text, m.ts, now) for peers, m in chats_out
                         if isinstance(m, Chat)])
                for kind, out in kinds_out.values():
                    kind.store_out(db, out, now)
                if outgoing:
                    db.executemany(
                        "INSERT OR IGNORE INTO outbox (msg_id, peer, payload, created)"
                        " VALUES (?, ?, ?, ?)",
                        [(getattr(msg, "msg_id"), p, payload, now)  # noqa: B009 - durable
                         for peers, msg, payload in outgoing for p in peers])
                for peer, ids in acked:
                    for msg_id in ids:
                        cur = db.execute("DELETE FROM outbox WHERE peer=? AND msg_id=?",
                                         (peer, msg_id))
                        if cur.rowcount == 1:
                            done.append((peer, msg_id))
                if before_commit is not None:
                    before_commit()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return fresh, done

    def outbox_after(self, peer: str, after_seq: int,
                     limit: int = OUTBOX_PAGE) -> list[tuple[int, str, bytes]]:
        """Return up to `limit` queued (seq, message id, payload) for `peer` after `after_seq`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, msg_id, payload FROM outbox WHERE peer=? AND seq>? ORDER BY seq"
                " LIMIT ?", (peer, after_seq, limit)).fetchall()
        return [(int(s), str(m), bytes(p)) for s, m, p in rows]

    def outbox_last(self, peer: str) -> int:
        """The highest outbox seq queued for `peer` (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT max(seq) FROM outbox WHERE peer=?",
                                   (peer,)).fetchone()
        return int(row[0] or 0)

    def outbox_peers(self) -> dict[str, int]:
        """Return {peer id: number of queued messages}."""
        with self._lock:
            rows = self._db.execute("SELECT peer, count(*) FROM outbox GROUP BY peer").fetchall()
        return {str(p): int(n) for p, n in rows}

    def history(self, peer: str | None = None, limit: int = 50, *, before: int | None = None,
                broadcast: bool | None = None) -> list[HistoryRow]:
        """Return the last `limit` messages, oldest first; with `peer`, only with that peer;
        with `before`, only those stored before that seq; with `broadcast`, only those
        sent to everyone (True) or only direct ones (False)."""
        sql = "SELECT id, peer, direction, broadcast, nick, text, ts, stored, seq FROM messages"
        where: list[str] = []
        args: list[Any] = []
        if peer is not None:
            where.append("peer=?")
            args.append(peer)
        if before is not None:
            where.append("seq<?")
            args.append(before)
        if broadcast is not None:
            where.append("broadcast=?")
            args.append(int(broadcast))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._database.read_lock:
            rows = self._database.reader.execute(sql, args).fetchall()
        return [_row(r) for r in reversed(rows)]

    def search(self, query: str, limit: int = 50) -> list[HistoryRow]:
        """Messages whose text matches every word of `query` (prefixes too), newest last."""
        words = [w.replace('"', '""') for w in query.split()]
        if not words:
            return []
        if not self.searchable:
            like = " AND ".join("text LIKE ?" for _ in words)
            sql = ("SELECT id, peer, direction, broadcast, nick, text, ts, stored, seq"
                   f" FROM messages WHERE {like} ORDER BY seq DESC LIMIT ?")
            args: list[Any] = [f"%{w}%" for w in words] + [limit]
        else:
            match = " ".join(f'"{w}"*' for w in words)
            sql = ("SELECT m.id, m.peer, m.direction, m.broadcast, m.nick, m.text, m.ts, m.stored,"
                   " m.seq"
                   " FROM messages_fts f JOIN messages m ON m.seq = f.rowid"
                   " WHERE messages_fts MATCH ? ORDER BY m.seq DESC LIMIT ?")
            args = [match, limit]
        if self.searchable:
            self.index_new()
        with self._database.read_lock:
            rows = self._database.reader.execute(sql, args).fetchall()
        return [_row(r) for r in reversed(rows)]

    def count_messages(self, direction: str | None = None) -> int:
        """Return how many messages are stored."""
        if direction is None:
            row = self.read(lambda db: db.execute("SELECT count(*) FROM messages").fetchone())
        else:
            row = self.read(lambda db: db.execute(
                "SELECT count(*) FROM messages WHERE direction=?", (direction,)).fetchone())
        return int(row[0])

    def bytes_from_since(self, peer: str, since: float) -> int:
        """UTF-8 bytes of text stored from `peer` since `since` (a stranger's daily share)."""
        row = self.read(lambda db: db.execute(
            "SELECT coalesce(sum(length(CAST(text AS BLOB))), 0) FROM messages"
            " WHERE peer=? AND direction='in' AND stored>=?", (peer, since)).fetchone())
        return int(row[0])

    def size_bytes(self) -> int:
        """The database's size on disk, its write-ahead log included."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                total += path.stat().st_size
            except OSError:
                pass
        return total
