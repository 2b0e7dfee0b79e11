"""What the store keeps of peers: known peers and their trust, pins, /ignore.

The tables live in the node's one database (`lanchat.database`), written on the writer's
connection; `Store.peers` is the one `PeerStore` of a node.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lanchat.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    id TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    addresses TEXT NOT NULL DEFAULT '[]',
    port INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    trust TEXT NOT NULL DEFAULT 'tofu'
);
CREATE TABLE IF NOT EXISTS pins (address TEXT PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ignored (id TEXT PRIMARY KEY, since REAL NOT NULL);
"""


def create(db: sqlite3.Connection) -> None:
    """Create the tables; stores made before peers had `exchanged` get the column (0: not
    known)."""
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(peers)")}
    if "exchanged" not in columns:
        db.execute("ALTER TABLE peers ADD COLUMN exchanged REAL NOT NULL DEFAULT 0")


@dataclass(frozen=True)
class KnownPeer:
    """A peer this node has talked to before."""

    id: str
    nick: str
    host: str
    addresses: tuple[str, ...]
    port: int
    first_seen: float
    last_seen: float
    trust: str


class PeerStore:
    """Known peers, pins of typed addresses and the /ignore list (any thread)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.writer
        self._lock = database.lock

    def _write(self, *changes: tuple[str, Sequence[Any]]) -> int:
        """Changes in one durable transaction (`Database.transact`: through the write
        gate, at synchronous=FULL even after a commit of acks alone left the writer at
        NORMAL); returns the rows the last one changed."""
        def run(db: sqlite3.Connection) -> int:
            return [db.execute(sql, args).rowcount for sql, args in changes][-1]
        return self._database.transact(run)

    def remember(self, node_id: str, nick: str, host: str, addresses: Iterable[str],
                 port: int, *, exchanged: bool = False) -> None:
        """Insert or refresh a known peer; `exchanged`: a message or file went either way
        (such a peer is kept across restarts)."""
        now = time.time()
        self._write((
            "INSERT INTO peers (id, nick, host, addresses, port, first_seen, last_seen,"
            " exchanged) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
            " nick=excluded.nick,"
            " host=CASE WHEN excluded.host='' THEN host ELSE excluded.host END,"
            " addresses=excluded.addresses, port=excluded.port, last_seen=excluded.last_seen,"
            " exchanged=max(exchanged, excluded.exchanged)",
            (node_id, nick, host, json.dumps(list(addresses)), port, now, now,
             now if exchanged else 0.0)))

    def known(self) -> list[KnownPeer]:
        """Return every known peer."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, nick, host, addresses, port, first_seen, last_seen, trust FROM peers"
                " ORDER BY first_seen").fetchall()
        out = []
        for r in rows:
            try:
                addrs = tuple(str(a) for a in json.loads(r[3]))
            except (ValueError, TypeError):
                addrs = ()
            out.append(KnownPeer(r[0], r[1], r[2], addrs, int(r[4]), r[5], r[6], r[7]))
        return out

    def trust_of(self, node_id: str) -> str | None:
        """A known peer's trust: 'tofu', 'verified' or 'trusted'; None if unknown."""
        with self._lock:
            row = self._db.execute("SELECT trust FROM peers WHERE id=?", (node_id,)).fetchone()
        return None if row is None else str(row[0])

    def set_trust(self, node_id: str, trust: str) -> bool:
        """Set a known peer's trust ('tofu', 'verified', 'blocked'); False if unknown."""
        return self._write(("UPDATE peers SET trust=? WHERE id=?", (trust, node_id))) == 1

    def forget(self, node_id: str) -> None:
        """Drop a known peer, its pins and its queued messages (one transaction)."""
        self._write(("DELETE FROM peers WHERE id=?", (node_id,)),
                    ("DELETE FROM pins WHERE id=?", (node_id,)),
                    ("DELETE FROM outbox WHERE peer=?", (node_id,)))

    def forget_silent(self) -> int:
        """Drop stored strangers that never exchanged a message with us (no history with
        them, nothing queued for them, no pin): a handshake alone is not kept across
        restarts. Returns how many went."""
        return self._write((
            "DELETE FROM peers WHERE trust='tofu' AND exchanged=0"
            " AND id NOT IN (SELECT DISTINCT peer FROM messages)"
            " AND id NOT IN (SELECT DISTINCT peer FROM outbox)"
            " AND id NOT IN (SELECT id FROM pins)", ()))

    def ignored(self) -> set[str]:
        """Node ids on /ignore: their messages are stored but not shown."""
        with self._lock:
            return {str(r[0]) for r in self._db.execute("SELECT id FROM ignored")}

    def set_ignored(self, node_id: str, on: bool) -> bool:
        """Put a peer on /ignore or take it off; False if nothing changed."""
        if on:
            return self._write(("INSERT OR IGNORE INTO ignored VALUES (?, ?)",
                                (node_id, time.time()))) == 1
        return self._write(("DELETE FROM ignored WHERE id=?", (node_id,))) == 1

    def pinned(self, address: str) -> str | None:
        """Return the node id pinned for a typed address (host:port), if any."""
        with self._lock:
            row = self._db.execute("SELECT id FROM pins WHERE address=?", (address,)).fetchone()
        return None if row is None else str(row[0])

    def pin(self, address: str, node_id: str) -> None:
        """Pin a typed address to the node id first seen there."""
        self._write(("INSERT OR REPLACE INTO pins VALUES (?, ?)", (address, node_id)))
