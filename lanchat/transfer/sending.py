"""The sending side: make offers, serve data requests, record how each send ended.

`SendingSide` owns the data listener (stream.DataServer, with its own accept and stream
threads) and the Prehasher (hashing.py, its own thread); it keeps no transfer state of its
own: records and which stream moves what live in the book (book.py). `offer` and
`send_offer` run on the caller's thread or the control thread; the `SendOwner` methods
run on a send stream's thread (or a LocalSend upload's).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from lanchat.api import NodeHost
from lanchat.protocol import FileEntry, FileOffer, encode
from lanchat.transfer.book import TransferBook
from lanchat.transfer.hashing import Partial, Prehasher, available
from lanchat.transfer.plan import source_files, walk
from lanchat.transfer.records import Item, State, Transfer, TransferError, digest_fields
from lanchat.transfer.stream import STALL_S, DataError, DataServer, SendJob

log = logging.getLogger(__name__)

TRANSFER_ID_BYTES = 5


class SendingSide:
    """Offers files and serves the data requests for them (a `stream.SendOwner`)."""

    def __init__(self, book: TransferBook, node: NodeHost, hashes: tuple[str, ...] = (), *,
                 stall_s: float = STALL_S) -> None:
        self.book = book
        self.node = node
        self._hashes = hashes
        self.prehasher = Prehasher()
        self.server = DataServer(node.identity, lambda: str(node.nick),
                                 list(node.config.interfaces), self, stall_s=stall_s)

    @property
    def hashes(self) -> tuple[str, ...]:
        """Digests this node offers and asks for, best first (only ones it can make; asked
        when a file first moves, so an idle node never loads the hash packages)."""
        return tuple(h for h in self._hashes if h in available()) or available()

    @property
    def port(self) -> int:
        """The data listener's port."""
        return self.server.port

    def start(self) -> None:
        """Open the data listener."""
        self.server.start()

    def stop(self) -> None:
        """Close the listener (its streams end) and the Prehasher."""
        self.server.stop()
        self.prehasher.close()

    def offer(self, peer: dict[str, Any], path: Path) -> Transfer:
        """Offer a file or folder to a resolved peer; return the new transfer."""
        path = path.expanduser()
        try:
            source = path.resolve(strict=True)
        except OSError:
            raise TransferError(f"no such file or folder: {path}") from None
        if source.is_dir():
            items = walk(source)
            name, folder = source.name or "folder", True
        elif source.is_file():
            items = (Item(source.name, source.stat().st_size),)
            name, folder = source.name, False
        else:
            raise TransferError(f"{path} is not a regular file or folder")
        tid = secrets.token_hex(TRANSFER_ID_BYTES)
        t = Transfer(tid, "out", peer["id"], peer["nick"], name, sum(i.size for i in items),
                     items, folder=folder, source=str(source))
        files = tuple(FileEntry(i.path, i.size) for i in items) if folder else ()
        try:
            encode(FileOffer(tid, name, t.size, None, files, self.port))
        except ValueError:
            raise TransferError(f"{path} has too many files for one offer; "
                                "send it as an archive") from None
        self.book.add(t)
        self.send_offer(t)
        self.book.count("offers_out")
        return t

    def send_offer(self, t: Transfer) -> None:
        """(Re)send the offer of an outgoing transfer, and hash it while the peer decides."""
        files = tuple(FileEntry(i.path, i.size) for i in t.items) if t.folder else ()
        self.node.send_control(t.peer, FileOffer(t.id, t.name, t.size, t.sha256, files,
                                                 self.port, self.hashes))
        if not t.state.finished:
            self.prehasher.submit((path for path, _ in source_files(t)), self.hashes[0])

    # -- SendOwner (stream threads) -------------------------------------------------------

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """Serve a data request only for a transfer offered to this very peer."""
        claimed = self.book.claim_send(transfer, peer)
        if isinstance(claimed, str):
            return claimed
        t, generation = claimed
        return SendJob(t.id, peer, generation, source_files(t),
                       tuple(i.path for i in t.items), t.size,
                       tuple((i.stamp, i.sha256) for i in t.items), t.folder)

    def wanted(self, transfer: str, generation: int) -> bool:
        """Stream threads ask this between chunks."""
        return self.book.wanted(transfer, generation)

    def progress(self, job: SendJob, done: int) -> None:
        """Emit throttled progress (the stream throttles)."""
        self.node.emit("file_progress", transfer=job.transfer, done=done, size=job.total,
                       direction="out")

    def hashed(self, job: SendJob, index: int, stamp: str, digest: str) -> None:
        """Keep a file's digest with its stamp, so a confirm need not read it again."""
        self.book.hashed(job.transfer, index, stamp, digest)

    def prehashed(self, path: str, alg: str) -> str | Partial | None:
        """What the Prehasher has of a file's digest (sending streams ask before sending)."""
        return self.prehasher.take(path, alg)

    def sent(self, job: SendJob, digest: str, alg: str) -> None:
        """The receiver verified everything (`digest` by `alg`)."""
        t = self.book.done(job.transfer, job.generation, digest, alg)
        if t is not None:
            self.node.emit("file_done", transfer=t.id, path=t.source, direction="out",
                           peer=t.peer, name=t.name, size=t.size, **digest_fields(alg, digest))

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """A send stream stopped."""
        current, t, _ = self.book.stream_ended(job.transfer, job.generation)
        if t is None or not current or t.state.finished:
            return
        log.info("sending %s stopped: %s", t.id, error.reason)
        if error.resumable:
            self.node.emit("file_failed", transfer=t.id, reason=error.reason, direction="out",
                           resumable=True)
            return
        self.book.finish(t, State.FAILED, error.reason)
