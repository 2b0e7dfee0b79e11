"""Writing the transfer records to the home: serialised, always the latest version, and
throttled while data moves.

`Recorder` owns the record files (records.RecordStore) and the save throttle (when each
record was last written, which ones have progress only in memory). Any thread calls it.

Lock discipline (checked by tests/test_transfer_locks.py, as for the book):
- `self._save_lock` serialises writes; under it the recorder reads the version to write
  from the book (which takes the book's lock briefly), so the book never calls the
  recorder while holding its own lock;
- `self._lock` guards the tables in `GUARDED` and is a leaf: nothing is called under it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from lanchat.transfer.records import RecordStore, Transfer

log = logging.getLogger(__name__)

SAVE_EVERY_S = 2.0  # a whole record is rewritten at most this often while data moves

GUARDED = frozenset({"_saved_at", "_dirty"})


class Recorder:
    """Writes records; `current(id)` gives the version to write, `count` notes errors."""

    def __init__(self, records: RecordStore, current: Callable[[str], Transfer | None],
                 count: Callable[[str], None]) -> None:
        self.records = records
        self._current = current
        self._count = count
        self._save_lock = threading.Lock()
        self._lock = threading.Lock()
        self._saved_at: dict[str, float] = {}  # when each record was last written
        self._dirty: set[str] = set()  # progress not yet written

    def persist(self, transfer_id: str) -> None:
        """Write the latest version of a record; offers never accepted are not written.

        Saves are serialised and always write what is current when they run, so two
        threads saving one record cannot leave an older version on disk.
        """
        def write(t: Transfer) -> None:
            if t.direction == "in" and not t.dest_dir:
                if t.state.finished:
                    self.records.delete(t.id)  # written by an older version, perhaps
                return
            self.records.save(t)

        self._write(transfer_id, write, "save transfer record")

    def log_file(self, transfer_id: str, index: int) -> None:
        """Persist that one file of a receive is published (a line, not the record)."""
        self._write(transfer_id, lambda t: self.records.log_file(t, index),
                    "log progress of transfer")

    def _write(self, transfer_id: str, write: Callable[[Transfer], None], what: str) -> None:
        with self._save_lock:
            t = self._current(transfer_id)
            if t is None:
                return
            try:
                write(t)
            except OSError as exc:
                self._count("record_errors")
                log.error("cannot %s %s: %s", what, t.id, exc)

    def persist_soon(self, transfer_id: str) -> None:
        """Persist progress at most every SAVE_EVERY_S per record; `flush` writes the rest."""
        now = time.monotonic()
        with self._lock:
            due = now - self._saved_at.get(transfer_id, -SAVE_EVERY_S) >= SAVE_EVERY_S
            if due:
                self._saved_at[transfer_id] = now
                self._dirty.discard(transfer_id)
            else:
                self._dirty.add(transfer_id)
        if due:
            self.persist(transfer_id)

    def flush(self, transfer_id: str | None = None) -> None:
        """Write progress that `persist_soon` kept only in memory (of every record: None)."""
        with self._lock:
            ids = [transfer_id] if transfer_id is not None else list(self._dirty)
            dirty = [tid for tid in ids if tid in self._dirty]
        self.forget(ids)
        for tid in dirty:
            self.persist(tid)

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the throttle state of these records (they ended, or were just written)."""
        with self._lock:
            for tid in ids:
                self._dirty.discard(tid)
                self._saved_at.pop(tid, None)

    def delete(self, ids: Iterable[str]) -> None:
        """Remove the files of records no longer kept."""
        for tid in ids:
            try:
                self.records.delete(tid)
            except OSError as exc:
                log.warning("cannot delete transfer record %s: %s", tid, exc)

    def save_autoaccept(self, ids: Callable[[], set[str]]) -> None:
        """Write the autoaccept list as `ids()` gives it when the write runs."""
        with self._save_lock:
            self.records.set_autoaccept(ids())
