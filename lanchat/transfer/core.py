"""State shared by the transfer extension's parts, and the helpers they all use.

`TransferManager` (manager.py) is built from `OfferControl` (offers.py), `ReceivingSide`
(receiving.py) and `SendingSide` (sending.py), each a subclass of `ManagerCore`. All state
is guarded by one lock and persisted in the home (records.py).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from lanchat.protocol import (
    FileEntry,
    FileOffer,
)
from lanchat.transfer import names
from lanchat.transfer.records import RecordStore, State, Transfer
from lanchat.transfer.stream import (
    STALL_S,
    DataServer,
    RecvJob,
    SendJob,
)

log = logging.getLogger("lanchat.transfer.manager")

OFFER_TIMEOUT_S = 300.0
TICK_S = 0.5
TRANSFER_ID_BYTES = 5
STOP_JOIN_S = 2.0


class TransferError(Exception):
    """A transfer request cannot be done; the message says what to do instead."""


class ManagerCore:
    """The transfer extension's state and shared helpers; public methods are thread-safe."""

    def __init__(self, *, offer_timeout_s: float = OFFER_TIMEOUT_S,
                 stall_s: float = STALL_S) -> None:
        self.offer_timeout_s = offer_timeout_s
        self.stall_s = stall_s
        self.node: Any = None
        self.records: RecordStore | None = None
        self.server: DataServer | None = None
        self.counters: dict[str, int] = {}
        self._lock = threading.RLock()
        self._transfers: dict[str, Transfer] = {}
        self._numbers: dict[str, int] = {}
        self._next_number = itertools.count(1)
        self._generations = itertools.count(1)
        self._active: dict[str, int] = {}
        self._deadlines: dict[str, float] = {}
        self._senders: dict[str, tuple[str, int]] = {}
        self._reoffered: set[str] = set()
        self._connected: set[str] = set()
        self._autoaccept: set[str] = set()
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None



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
        assert self.records is not None
        try:
            self.records.save(t)
        except OSError as exc:
            self._count("record_errors")
            log.error("cannot save transfer record %s: %s", t.id, exc)
        return t

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _emit(self, event: str, /, **fields: Any) -> None:
        self.node.emit(event, **fields)

    def _finish(self, t: Transfer, state: State, reason: str, *, detail: str = "",
                resumable: bool = False) -> None:
        with self._lock:
            self._active.pop(t.id, None)
            self._deadlines.pop(t.id, None)
        self._save(t.with_(state=state, reason=reason if not detail else f"{reason}: {detail}"))
        fields: dict[str, Any] = {"transfer": t.id, "reason": reason,
                                  "direction": t.direction, "resumable": resumable}
        if detail:
            fields["detail"] = detail
        self._emit("file_failed", **fields)

    def _delete_parts(self, t: Transfer) -> None:
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
                                                 self.port))

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

    def accept(self, ref: str | None = None, dest: Path | None = None) -> Transfer:
        """Accept an offer (manager.py)."""
        raise NotImplementedError

    def decline(self, ref: str | None, reason: str = "") -> Transfer:
        """Decline an offer (manager.py)."""
        raise NotImplementedError

    def _start_receiver(self, t: Transfer) -> None:
        """Start fetching an accepted transfer (receiving.py)."""
        raise NotImplementedError
