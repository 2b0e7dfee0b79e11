"""The receiving side of the extension: start a fetch, record its progress and outcome.

`_start_receiver` runs on the control thread or the caller's; the callbacks run on the
receive stream's thread (stream.Receiver).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from lanchat.protocol import (
    FileAnswer,
    FileCancel,
)
from lanchat.transfer.core import ManagerCore
from lanchat.transfer.records import State, Transfer
from lanchat.transfer.stream import (
    DataError,
    Receiver,
    RecvItem,
    RecvJob,
)

log = logging.getLogger("lanchat.transfer.manager")


class ReceivingSide(ManagerCore):
    """Starts receivers and records what they report."""

    def _resume(self, t: Transfer) -> None:
        with self._lock:
            known = t.id in self._senders
        if known:
            self._start_receiver(t)
        else:
            self.node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))

    def _restart(self, transfer_id: str) -> None:
        t = self.get(transfer_id)
        if t is not None and t.state is State.ACCEPTED:
            self._start_receiver(t)

    def _start_receiver(self, t: Transfer) -> None:
        with self._lock:
            sender = self._senders.get(t.id)
            if sender is None or t.id in self._active:
                return
            generation = next(self._generations)
            self._active[t.id] = generation
            self._reoffered.discard(t.id)
            t = self._transfers.get(t.id, t)
        index = len(t.items) if t.state is State.DONE else t.index
        job = RecvJob(t.id, t.peer, sender[0], sender[1], generation, t.dest_dir,
                      tuple(RecvItem(i.path, i.size, i.dest, i.sha256) for i in t.items),
                      index, t.sha256, t.size, t.hash)
        receiver = Receiver(job, self.node.identity, str(self.node.nick), self,
                            stall_s=self.stall_s)
        with self._lock:
            self._receivers = {r for r in self._receivers
                               if r.thread is None or r.thread.is_alive()}
            self._receivers.add(receiver)
        receiver.start()

    def claim_receive(self, transfer_id: str, peer: str) -> RecvJob | str:
        """A foreign sender pushes the data of an accepted offer (a LocalSend upload): make
        its writer the one that moves it; return the job, or why not."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            if t is None or t.direction != "in" or t.peer != peer:
                return "no such transfer from you"
            if t.state is not State.ACCEPTED:
                return f"transfer is {t.state.value}"
            if transfer_id in self._active:
                return "transfer is already moving"
            generation = next(self._generations)
            self._active[t.id] = generation
        return RecvJob(t.id, t.peer, "", 0, generation, t.dest_dir,
                       tuple(RecvItem(i.path, i.size, i.dest, i.sha256) for i in t.items),
                       t.index, t.sha256, t.size, t.hash)

    def _current(self, job: RecvJob) -> Transfer | None:
        """The record, if this stream is still the one that moves it (hold the lock)."""
        t = self._transfers.get(job.transfer)
        if t is None or self._active.get(job.transfer) != job.generation:
            return None
        return t

    def file_complete(self, job: RecvJob, index: int, final: str, digest: str) -> None:
        """Note that file `index` is published (written to the record at most every
        SAVE_EVERY_S, and the disk I/O outside the lock)."""
        with self._lock:
            t = self._current(job)
            if t is None or t.state.finished or index >= len(t.items):
                return
            items = list(t.items)
            items[index] = replace(items[index], final=final, sha256=digest)
            path = t.path
            if not t.folder:
                path = os.path.join(t.dest_dir, *items[index].dest[:-1], final)
            self._remember(t.with_(items=tuple(items), index=index + 1, path=path))
        self._log_file(t.id, index)
        self._persist_soon(t.id)

    def received(self, job: RecvJob, digest: str) -> None:
        """All verified: record and announce (unless cancelled or superseded meanwhile)."""
        with self._lock:
            t = self._current(job)
            if t is None:
                return
            del self._active[job.transfer]
            self._senders.pop(job.transfer, None)
            self._dirty.discard(job.transfer)
            self._saved_at.pop(job.transfer, None)
            if t.state.finished:
                return
            t = t.with_(state=State.DONE, result=digest, index=len(t.items))
            self._remember(t)
        self._persist(t.id)
        self._count("files_in")
        self._emit("file_done", transfer=t.id, path=t.path, direction="in",
                   peer=t.peer, name=t.name, size=t.size, **self.done_fields(t.hash, digest))
        self._prune(t.peer)

    def receive_failed(self, job: RecvJob, error: DataError) -> None:
        """A receive stream stopped: keep it resumable or fail it."""
        with self._lock:
            current = self._active.get(job.transfer) == job.generation
            if current:
                del self._active[job.transfer]
            t = self._transfers.get(job.transfer)
            again = current and error.resumable and job.transfer in self._reoffered
        if t is None:
            return
        self._flush(t.id)
        if not current or t.state.finished:
            if t.state in (State.CANCELLED, State.FAILED, State.DECLINED):
                # the stream may have made a .part after the cancel removed the others
                self._queue.put(("call", lambda: self._delete_parts(t)))
            return
        log.info("receiving %s stopped: %s", t.id, error.reason)
        if error.resumable:
            self._emit("file_failed", transfer=t.id, reason=error.reason, direction="in",
                       resumable=True)
            if again:
                self._queue.put(("call", lambda: self._restart(t.id)))
            return
        self._finish(t, State.FAILED, error.reason)
        self.node.send_control(t.peer, FileCancel(t.id, error.reason[:200]))
        self._queue.put(("call", lambda: self._delete_parts(t)))
