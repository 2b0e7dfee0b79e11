"""The receiving side: accept or decline offers, start receive streams, record the outcome.

`ReceivingSide` owns the receive streams it started (`_receivers`), touched only on the
control thread (control.py): `start` and `restart` run there, and `accept`/`resume`, which
callers run on their own thread, queue the start there. Records and which stream moves
what live in the book (book.py). The `RecvOwner` methods run on a receive stream's thread
(stream.Receiver, or a LocalSend upload's).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from lanchat.api import NodeHost
from lanchat.protocol import FileAnswer, FileCancel
from lanchat.transfer.book import TransferBook
from lanchat.transfer.plan import delete_parts, human_size, plan
from lanchat.transfer.records import State, Transfer, TransferError, digest_fields
from lanchat.transfer.stream import STALL_S, DataError, Receiver, RecvItem, RecvJob

log = logging.getLogger(__name__)


class ReceivingSide:
    """Answers offers here and fetches accepted ones (a `stream.RecvOwner`)."""

    def __init__(self, book: TransferBook, node: NodeHost,
                 later: Callable[[Callable[[], object]], None], *,
                 stall_s: float = STALL_S) -> None:
        self.book = book
        self.node = node
        self.later = later  # runs a call on the control thread
        self.stall_s = stall_s
        self._receivers: list[Receiver] = []  # control thread only

    # -- answers (caller's thread, or the control thread for autoaccept) ------------------

    def accept(self, t: Transfer, dest: Path | None = None) -> Transfer:
        """Accept an offer into `dest` or the downloads (or resume an accepted one)."""
        if t.state is State.ACCEPTED:
            if self.book.moving(t.id):
                raise TransferError(f"transfer {t.id} is already moving")
            self.resume(t)
            return t
        root = (dest or self.node.config.downloads_dir).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
            root_s = os.path.realpath(root)
            free = shutil.disk_usage(root_s).free
        except OSError as exc:
            raise TransferError(f"cannot use {root}: {exc.strerror or exc}") from None
        free -= self._promised(root_s, t.id)
        if free < t.size:
            raise TransferError(f"not enough space in {root}: {human_size(t.size)} needed, "
                                f"{human_size(max(0, free))} free for it")
        try:
            items = plan(t, root_s)
        except OSError as exc:
            raise TransferError(f"cannot prepare {root}: {exc.strerror or exc}") from None
        known = self.book.knows_sender(t.id)
        t = self.book.add(t.with_(state=State.ACCEPTED, dest_dir=root_s, items=items,
                                  path=os.path.join(root_s, items[0].dest[0])))
        # no data port known (an offer from before a restart): "resume" asks for it again
        self.node.send_control(t.peer, FileAnswer(t.id, True, (0, 0),
                                                  "" if known else "resume"))
        self.later(lambda: self.start(t.id))
        return t

    def _promised(self, root: str, skip: str) -> int:
        """Bytes other accepted transfers still have to write on the disk of `root`."""
        others = [t for t in self.book.select(direction="in", states=(State.ACCEPTED,))
                  if t.id != skip]
        try:
            dev = os.stat(root).st_dev
        except OSError:
            return 0
        total = 0
        for t in others:
            try:
                same = os.stat(t.dest_dir).st_dev == dev
            except OSError:
                continue
            if same:
                total += sum(i.size for i in t.items[t.index:])
        return total

    def decline(self, t: Transfer, reason: str = "") -> Transfer:
        """Say no to an offer."""
        self.node.send_control(t.peer, FileAnswer(t.id, False, reason=reason[:200]))
        return self.book.finish(t, State.DECLINED, "declined", detail=reason)

    def resume(self, t: Transfer) -> None:
        """Fetch again, or ask the sender for its data port."""
        if self.book.knows_sender(t.id):
            self.later(lambda: self.start(t.id))
        else:
            self.node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))

    # -- streams (control thread) ---------------------------------------------------------

    def start(self, transfer_id: str) -> None:
        """Start fetching an accepted transfer, unless it moves or its sender is unknown."""
        claimed = self.book.start_receive(transfer_id)
        if claimed is None:
            return
        t, generation, (address, port) = claimed
        index = len(t.items) if t.state is State.DONE else t.index
        job = RecvJob(t.id, t.peer, address, port, generation, t.dest_dir,
                      tuple(RecvItem(i.path, i.size, i.dest, i.sha256) for i in t.items),
                      index, t.sha256, t.size, t.hash)
        receiver = Receiver(job, self.node.identity, str(self.node.nick), self,
                            stall_s=self.stall_s)
        self._receivers = [r for r in self._receivers
                           if r.thread is None or r.thread.is_alive()]
        self._receivers.append(receiver)
        receiver.start()

    def restart(self, transfer_id: str) -> None:
        """Start again after a stream dropped while the sender offered anew."""
        t = self.book.get(transfer_id)
        if t is not None and t.state is State.ACCEPTED:
            self.start(transfer_id)

    def stop(self, deadline: Callable[[], float]) -> None:
        """End every receive stream (once the control thread has ended): a stream blocked
        in recv ends now, not at its stall; wait for each until `deadline()` is spent."""
        receivers, self._receivers = self._receivers, []
        for receiver in receivers:
            receiver.stop()
        for receiver in receivers:
            if receiver.thread is not None:
                receiver.thread.join(deadline())

    # -- RecvOwner (stream threads) -------------------------------------------------------

    def claim_receive(self, transfer_id: str, peer: str) -> RecvJob | str:
        """A foreign sender pushes the data of an accepted offer (a LocalSend upload): make
        its writer the one that moves it; return the job, or why not."""
        claimed = self.book.claim_receive(transfer_id, peer)
        if isinstance(claimed, str):
            return claimed
        t, generation = claimed
        return RecvJob(t.id, t.peer, "", 0, generation, t.dest_dir,
                       tuple(RecvItem(i.path, i.size, i.dest, i.sha256) for i in t.items),
                       t.index, t.sha256, t.size, t.hash)

    def wanted(self, transfer: str, generation: int) -> bool:
        """Stream threads ask this between chunks."""
        return self.book.wanted(transfer, generation)

    def progress(self, job: RecvJob, done: int) -> None:
        """Emit throttled progress (the stream throttles)."""
        self.node.emit("file_progress", transfer=job.transfer, done=done, size=job.total,
                       direction="in")

    def file_complete(self, job: RecvJob, index: int, final: str, digest: str) -> None:
        """Note that file `index` is published (written to the record at most every
        SAVE_EVERY_S, and the disk I/O outside the lock)."""
        self.book.file_published(job.transfer, job.generation, index, final, digest)

    def received(self, job: RecvJob, digest: str) -> None:
        """All verified: record and announce (unless cancelled or superseded meanwhile)."""
        t = self.book.done(job.transfer, job.generation, digest)
        if t is not None:
            self.node.emit("file_done", transfer=t.id, path=t.path, direction="in",
                           peer=t.peer, name=t.name, size=t.size,
                           **digest_fields(t.hash, digest))

    def receive_failed(self, job: RecvJob, error: DataError) -> None:
        """A receive stream stopped: keep it resumable or fail it."""
        current, t, reoffered = self.book.stream_ended(job.transfer, job.generation)
        if t is None:
            return
        if not current or t.state.finished:
            if t.state in (State.CANCELLED, State.FAILED, State.DECLINED):
                # the stream may have made a .part after the cancel removed the others
                self.later(lambda: delete_parts(self.book.get(t.id) or t))
            return
        log.info("receiving %s stopped: %s", t.id, error.reason)
        if error.resumable:
            self.node.emit("file_failed", transfer=t.id, reason=error.reason, direction="in",
                           resumable=True)
            if reoffered:
                self.later(lambda: self.restart(t.id))
            return
        self.book.finish(t, State.FAILED, error.reason)
        self.node.send_control(t.peer, FileCancel(t.id, error.reason[:200]))
        self.later(lambda: delete_parts(self.book.get(t.id) or t))
