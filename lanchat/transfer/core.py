"""State shared by the transfer extension's parts, and the helpers they all use.

`TransferManager` (manager.py) is built from `OfferControl` (offers.py), `ReceivingSide`
(receiving.py) and `SendingSide` (sending.py), each a subclass of `ManagerCore`. All state
is guarded by one lock and persisted in the home (records.py).

Lock discipline: the tables named in `GUARDED` are read and changed only under
`self._lock` (any thread: the control thread, stream threads, the event thread, callers
of the public methods); `_save_lock` is taken after `_lock`, never before it. The rule is
checked on the source by tests/test_transfer_locks.py.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, cast

from lanchat.api import NodeHost
from lanchat.protocol import (
    SHA256,
    FileEntry,
    FileOffer,
)
from lanchat.transfer import names
from lanchat.transfer.hashing import Partial, Prehasher, available
from lanchat.transfer.records import RecordStore, State, Transfer
from lanchat.transfer.stream import (
    STALL_S,
    DataServer,
    Receiver,
    RecvJob,
    SendJob,
)

log = logging.getLogger("lanchat.transfer.manager")

OFFER_TIMEOUT_S = 300.0
TICK_S = 0.5
RESUME_RETRY_S = 5.0  # an idle accepted transfer asks its connected sender again this often
RESUME_RETRIES = 3  # ... at most this many times per connection
TRANSFER_ID_BYTES = 5
STOP_JOIN_S = 2.0
SAVE_EVERY_S = 2.0  # a whole record is rewritten at most this often while data moves
MAX_FINISHED_PER_PEER = 64  # finished incoming records kept per peer; older ones go


def source_files(t: Transfer) -> tuple[tuple[str, int], ...]:
    """An outgoing transfer's files on this disk: (path, size) in offer order."""
    root = Path(t.source)
    if not t.folder:
        return ((str(root), t.size),)
    return tuple((str(root.joinpath(*i.path.split("/"))), i.size) for i in t.items)


GUARDED = frozenset({"_transfers", "_numbers", "_active", "_deadlines", "_senders",
                     "_retried", "_reoffered", "_connected", "_autoaccept", "_receivers"})


class TransferError(Exception):
    """A transfer request cannot be done; the message says what to do instead."""


class ManagerCore:
    """The transfer extension's state and shared helpers; public methods are thread-safe."""

    def __init__(self, *, offer_timeout_s: float = OFFER_TIMEOUT_S,
                 stall_s: float = STALL_S, hashes: tuple[str, ...] = ()) -> None:
        self.offer_timeout_s = offer_timeout_s
        self.stall_s = stall_s
        self._hashes = hashes
        self.prehasher = Prehasher()
        self.node: NodeHost = cast("NodeHost", None)  # set by start()
        self.records: RecordStore | None = None
        self.server: DataServer | None = None
        self.counters: dict[str, int] = {}
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()  # taken after _lock, never before it
        self._transfers: dict[str, Transfer] = {}
        self._numbers: dict[str, int] = {}
        self._next_number = itertools.count(1)
        self._generations = itertools.count(1)
        self._active: dict[str, int] = {}
        self._deadlines: dict[str, float] = {}
        self._senders: dict[str, tuple[str, int]] = {}
        self._retried: dict[str, tuple[float, int]] = {}  # id -> (last ask, asks so far)
        self._reoffered: set[str] = set()
        self._connected: set[str] = set()
        self._autoaccept: set[str] = set()
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._receivers: set[Receiver] = set()
        self._saved_at: dict[str, float] = {}  # receive progress: when last written
        self._dirty: set[str] = set()  # receive progress not yet written

    @property
    def hashes(self) -> tuple[str, ...]:
        """Digests this node offers and asks for, best first (only ones it can make; asked
        when a file first moves, so an idle node never loads the hash packages)."""
        return tuple(h for h in self._hashes if h in available()) or available()

    @property
    def port(self) -> int:
        """The data listener's port."""
        return self.server.port if self.server is not None else 0

    def _remember(self, t: Transfer) -> None:
        with self._lock:
            if t.id not in self._numbers:
                self._numbers[t.id] = next(self._next_number)
            self._transfers[t.id] = t

    def _save(self, t: Transfer) -> Transfer:
        """Keep and persist a new version of a record."""
        self._remember(t)
        self._persist(t.id)
        return t

    def _persist(self, transfer_id: str) -> None:
        """Write the latest version of a record; offers never accepted are not written.

        Saves are serialised and always write what is current when they run, so two
        threads saving one record cannot leave an older version on disk.
        """
        assert self.records is not None
        with self._save_lock:
            t = self._transfers.get(transfer_id)
            if t is None:
                return
            try:
                if t.direction == "in" and not t.dest_dir:
                    if t.state.finished:
                        self.records.delete(t.id)  # written by an older version, perhaps
                    return
                self.records.save(t)
            except OSError as exc:
                self._count("record_errors")
                log.error("cannot save transfer record %s: %s", t.id, exc)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _emit(self, event: str, /, **fields: Any) -> None:
        self.node.emit(event, **fields)

    def _log_file(self, transfer_id: str, index: int) -> None:
        """Persist that one file of a receive is published (a line, not the record)."""
        assert self.records is not None
        with self._save_lock:
            t = self._transfers.get(transfer_id)
            if t is None:
                return
            try:
                self.records.log_file(t, index)
            except OSError as exc:
                self._count("record_errors")
                log.error("cannot log progress of transfer %s: %s", t.id, exc)

    def _persist_soon(self, transfer_id: str) -> None:
        """Persist progress at most every SAVE_EVERY_S per record; `_flush` writes the rest."""
        now = time.monotonic()
        with self._lock:
            due = now - self._saved_at.get(transfer_id, -SAVE_EVERY_S) >= SAVE_EVERY_S
            if due:
                self._saved_at[transfer_id] = now
                self._dirty.discard(transfer_id)
            else:
                self._dirty.add(transfer_id)
        if due:
            self._persist(transfer_id)

    def _flush(self, transfer_id: str) -> None:
        """Write progress that `_persist_soon` kept only in memory."""
        with self._lock:
            dirty = transfer_id in self._dirty
            self._dirty.discard(transfer_id)
            self._saved_at.pop(transfer_id, None)
        if dirty:
            self._persist(transfer_id)

    def _finish(self, t: Transfer, state: State, reason: str, *, detail: str = "",
                resumable: bool = False) -> None:
        with self._lock:
            self._active.pop(t.id, None)
            self._deadlines.pop(t.id, None)
            self._senders.pop(t.id, None)
            self._retried.pop(t.id, None)
            self._reoffered.discard(t.id)
            self._dirty.discard(t.id)
            self._saved_at.pop(t.id, None)
            t = self._transfers.get(t.id, t)
            changes: dict[str, Any] = {}
            if t.direction == "in" and not t.dest_dir:
                changes["items"] = ()  # never accepted: keep the summary, not the file list
            t = t.with_(state=state, reason=reason if not detail else f"{reason}: {detail}",
                        **changes)
            self._remember(t)
        self._persist(t.id)
        if t.direction == "in":
            self._prune(t.peer)
        fields: dict[str, Any] = {"transfer": t.id, "reason": reason,
                                  "direction": t.direction, "resumable": resumable}
        if detail:
            fields["detail"] = detail
        self._emit("file_failed", **fields)

    def _prune(self, peer: str) -> None:
        """Keep at most MAX_FINISHED_PER_PEER finished incoming records of one peer."""
        with self._lock:
            done = sorted((x for x in self._transfers.values() if x.peer == peer
                           and x.direction == "in" and x.state.finished),
                          key=lambda x: (x.created, self._numbers[x.id]))
            drop = done[:max(0, len(done) - MAX_FINISHED_PER_PEER)]
            for x in drop:
                del self._transfers[x.id]
                del self._numbers[x.id]
        assert self.records is not None
        for x in drop:
            try:
                self.records.delete(x.id)
            except OSError as exc:
                log.warning("cannot delete transfer record %s: %s", x.id, exc)

    def _delete_parts(self, t: Transfer) -> None:
        t = self.get(t.id) or t
        if t.direction != "in" or not t.dest_dir:
            return
        for item in t.items[t.index:]:
            if not item.dest:
                continue
            try:
                with names.open_dir(t.dest_dir, item.dest[:-1], create=False) as fd:
                    os.unlink(item.dest[-1] + names.PART_SUFFIX, dir_fd=fd)
            except OSError:
                pass

    def _send_offer(self, t: Transfer) -> None:
        files = tuple(FileEntry(i.path, i.size) for i in t.items) if t.folder else ()
        self.node.send_control(t.peer, FileOffer(t.id, t.name, t.size, t.sha256, files,
                                                 self.port, self.hashes))
        if not t.state.finished:  # hashed while the receiver decides
            self.prehasher.submit((path for path, _ in source_files(t)), self.hashes[0])

    def prehashed(self, path: str, alg: str) -> str | Partial | None:
        """What the Prehasher has of a file's digest (sending streams ask before sending)."""
        return self.prehasher.take(path, alg)

    def done_fields(self, alg: str, digest: str | None) -> dict[str, Any]:
        """The `file_done` fields that name the digest: `sha256` (null unless SHA-256 was
        used: the contract's field, never a digest of another kind), `hash`, `digest`."""
        return {"sha256": digest if alg == SHA256 else None, "hash": alg, "digest": digest}

    def wanted(self, transfer: str, generation: int) -> bool:
        """Stream threads ask this between chunks."""
        with self._lock:
            return self._active.get(transfer) == generation

    def progress(self, job: SendJob | RecvJob, done: int) -> None:
        """Emit throttled progress (the stream throttles)."""
        direction = "out" if isinstance(job, SendJob) else "in"
        self._emit("file_progress", transfer=job.transfer, done=done, size=job.total,
                   direction=direction)

    def get(self, transfer_id: str) -> Transfer | None:
        """The record of one transfer."""
        with self._lock:
            return self._transfers.get(transfer_id)

    # -- provided by the other parts ------------------------------------------------

    def _accept(self, t: Transfer, dest: Path | None = None) -> Transfer:
        """Accept this offer (manager.py)."""
        raise NotImplementedError

    def _decline(self, t: Transfer, reason: str = "") -> Transfer:
        """Decline this offer (manager.py)."""
        raise NotImplementedError

    def _resume(self, t: Transfer) -> None:
        """Fetch again, or ask the sender for its data port (receiving.py)."""
        raise NotImplementedError

    def _start_receiver(self, t: Transfer) -> None:
        """Start fetching an accepted transfer (receiving.py)."""
        raise NotImplementedError
