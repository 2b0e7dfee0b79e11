"""The sending side of the extension: which data request is served, and how it ended.

Every method here runs on a send stream's thread (stream.DataServer).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from lanchat.transfer.core import ManagerCore, source_files
from lanchat.transfer.records import State
from lanchat.transfer.stream import (
    DataError,
    SendJob,
)

log = logging.getLogger("lanchat.transfer.manager")


class SendingSide(ManagerCore):
    """Decides what a data request gets and records the outcome."""

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """Serve a data request only for a transfer offered to this very peer."""
        with self._lock:
            t = self._transfers.get(transfer)
            if t is None or t.direction != "out" or t.peer != peer:
                return "no such transfer offered to you"
            if t.state.finished and t.state is not State.DONE:
                return f"transfer is {t.state.value}"
            # DONE: the receiver missed our answer and confirms what it has
            generation = next(self._generations)
            self._active[transfer] = generation
            self._deadlines.pop(transfer, None)
            accepted = t.state is State.OFFERED
            if accepted:
                t = t.with_(state=State.ACCEPTED)
                self._remember(t)
        if accepted:
            self._persist(t.id)
        return SendJob(t.id, peer, generation, source_files(t),
                       tuple(i.path for i in t.items), t.size,
                       tuple((i.stamp, i.sha256) for i in t.items), t.folder)

    def hashed(self, job: SendJob, index: int, stamp: str, digest: str) -> None:
        """Keep a file's digest with its stamp, so a confirm need not read it again."""
        with self._lock:
            t = self._transfers.get(job.transfer)
            if t is None or index >= len(t.items) or t.items[index].stamp == stamp:
                return
            items = list(t.items)
            items[index] = replace(items[index], stamp=stamp, sha256=digest)
            self._remember(t.with_(items=tuple(items)))
        self._persist_soon(job.transfer)

    def sent(self, job: SendJob, digest: str, alg: str) -> None:
        """The receiver verified everything (`digest` by `alg`)."""
        with self._lock:
            if self._active.get(job.transfer) == job.generation:
                del self._active[job.transfer]
            t = self._transfers[job.transfer]
            if t.state.finished:  # done before (a confirm), or cancelled meanwhile
                self._dirty.discard(t.id)
                return
            t = t.with_(state=State.DONE, result=digest, hash=alg)
            self._remember(t)
            self._dirty.discard(t.id)
            self._saved_at.pop(t.id, None)
        self._persist(t.id)
        self._count("files_out")
        self._emit("file_done", transfer=t.id, path=t.source, direction="out",
                   peer=t.peer, name=t.name, size=t.size, **self.done_fields(alg, digest))

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """A send stream stopped."""
        with self._lock:
            current = self._active.get(job.transfer) == job.generation
            if current:
                del self._active[job.transfer]
            t = self._transfers[job.transfer]
        self._flush(t.id)
        if not current or t.state.finished:
            return
        log.info("sending %s stopped: %s", t.id, error.reason)
        if error.resumable:
            self._emit("file_failed", transfer=t.id, reason=error.reason, direction="out",
                       resumable=True)
            return
        self._finish(t, State.FAILED, error.reason)


