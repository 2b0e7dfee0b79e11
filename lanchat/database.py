"""One SQLite file on three connections, and who may write when.

WAL with synchronous=FULL: a message is acked only after a commit that is durable. Each
connection has its own lock, so any thread may call: the writer (commits, the outbox,
peers), a read-only reader (history, search: WAL lets it read while the writer commits)
and the search indexer. The tables are the store's (`lanchat.store`, `lanchat.peer_store`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

T = TypeVar("T")

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 2000  # how long a write waits for another connection's transaction


class StoreError(Exception):
    """The database cannot be used; the message says why and what to do."""


class Database:
    """The writer, reader and indexer connections of one database file."""

    def __init__(self, path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Open `path`, check it, and let `setup(writer)` create or upgrade the tables."""
        self.path = path
        self.lock = threading.RLock()  # the writer's; re-entered by commit_batch's hook
        self.read_lock = threading.Lock()
        self.index_lock = threading.Lock()
        # SQLite has one writer at a time. The gate orders the two writing connections in
        # Python, commits first: a waiting commit never sleeps in SQLite's busy handler
        # while the indexer takes chunk after chunk.
        self._gate = threading.Condition()
        self._gate_busy = False
        self._commits_waiting = 0
        try:
            self.writer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.writer.execute("PRAGMA journal_mode=WAL")
            self.writer.execute("PRAGMA synchronous=FULL")
            self._durable = True
            self.writer.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            check = self.writer.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            self.writer.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            setup(self.writer)
            row = self.writer.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"database {path} is damaged or unreadable ({exc}); move it away to start "
                "with an empty history"
            ) from None
        if row is None:
            self.writer.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            self.writer.close()
            raise StoreError(
                f"database {path} has schema {row[0]}, newer than this lanchat understands "
                f"({SCHEMA_VERSION}); upgrade lanchat"
            )
        try:
            self.reader = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                                          check_same_thread=False, isolation_level=None)
            self.reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.indexer = sqlite3.connect(path, check_same_thread=False,
                                           isolation_level=None)
            self.indexer.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.indexer.execute("PRAGMA synchronous=NORMAL")  # the index can be rebuilt
        except sqlite3.Error as exc:
            self.writer.close()
            raise StoreError(f"cannot open {path} for reading: {exc}") from None

    @contextmanager
    def gate(self, *, commit: bool) -> Iterator[None]:
        """Hold the write gate: a commit goes before the indexer's next chunk."""
        with self._gate:
            if commit:
                self._commits_waiting += 1
            while self._gate_busy or (not commit and self._commits_waiting):
                self._gate.wait()
            if commit:
                self._commits_waiting -= 1
            self._gate_busy = True
        try:
            yield
        finally:
            with self._gate:
                self._gate_busy = False
                self._gate.notify_all()

    def durable(self, on: bool) -> None:
        """Make the writer's commits wait for the disk (FULL) or not (NORMAL); writer's
        lock held."""
        if on != self._durable:
            self.writer.execute(f"PRAGMA synchronous={'FULL' if on else 'NORMAL'}")
            self._durable = on

    def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(writer)` in one durable transaction."""
        with self.gate(commit=True), self.lock:
            db = self.writer
            self.durable(True)
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return result

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(reader)` on the read-only connection."""
        with self.read_lock:
            return fn(self.reader)

    def close(self) -> None:
        """Close the connections."""
        with self.index_lock:
            self.indexer.close()
        with self.read_lock:
            self.reader.close()
        with self.lock:
            self.writer.close()
