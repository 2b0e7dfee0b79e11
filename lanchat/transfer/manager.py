"""The transfer extension: a small facade over the parts that each own their state.

The parts (docs/ARCHITECTURE.md, "Files"), built at `start`:
- `TransferBook` (book.py): every record and which stream moves it, under one lock;
  it writes the records through its `Recorder` (recorder.py: the save lock, the throttle);
- `ControlThread` (control.py): the thread that runs control messages and the tick;
- `OfferControl` (offers.py): offers, answers, cancels, expiry, resume retries; its own
  state is touched only on the control thread;
- `SendingSide` (sending.py): offers, the data listener, the Prehasher, send streams;
- `ReceivingSide` (receiving.py): accept, decline, receive streams (control thread).

Threads: the node's loop only queues control messages (`on_message`), the event thread
only queues peer changes (`on_event`); public methods run on the caller's thread (never
the loop: they touch the disk), stream callbacks on stream threads. No part holds a lock
while it calls another part; shared transfer state is guarded by the book's lock alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanchat.api import NodeHost, PeerSession
from lanchat.events import Event
from lanchat.protocol import FileAnswer, FileCancel, FileOffer, Message
from lanchat.transfer.book import TransferBook
from lanchat.transfer.control import ControlThread
from lanchat.transfer.hashing import Partial, Prehasher
from lanchat.transfer.offers import OFFER_TIMEOUT_S, OfferControl
from lanchat.transfer.plan import delete_parts
from lanchat.transfer.receiving import ReceivingSide
from lanchat.transfer.records import RecordStore, State, Transfer, TransferError
from lanchat.transfer.sending import SendingSide
from lanchat.transfer.stream import STALL_S, DataError, DataServer, RecvJob, SendJob

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from lanchat.node import Node

__all__ = ["OFFER_TIMEOUT_S", "TransferError", "TransferManager", "attach"]

STOP_JOIN_S = 2.0


@dataclass(frozen=True)
class _Parts:
    node: NodeHost
    book: TransferBook
    sending: SendingSide
    receiving: ReceivingSide
    offers: OfferControl


class TransferManager:
    """Node extension for file transfer; public methods are thread-safe."""

    def __init__(self, *, offer_timeout_s: float = OFFER_TIMEOUT_S,
                 stall_s: float = STALL_S, hashes: tuple[str, ...] = ()) -> None:
        self.offer_timeout_s = offer_timeout_s
        self.stall_s = stall_s
        self._hashes = hashes
        self.control = ControlThread()
        self._parts: _Parts | None = None  # set by start(), before the control thread runs

    def _running(self) -> _Parts:
        if self._parts is None:
            raise TransferError("file transfer is not started")
        return self._parts

    # -- the parts, for the tests and the doctor ------------------------------------------

    @property
    def book(self) -> TransferBook:
        """Records and moves (book.py)."""
        return self._running().book

    @property
    def sending(self) -> SendingSide:
        """The sending side (sending.py)."""
        return self._running().sending

    @property
    def receiving(self) -> ReceivingSide:
        """The receiving side (receiving.py)."""
        return self._running().receiving

    @property
    def records(self) -> RecordStore:
        """The records in the home."""
        return self.book.records

    @property
    def server(self) -> DataServer:
        """The data listener."""
        return self.sending.server

    @property
    def prehasher(self) -> Prehasher:
        """The sender's hasher-ahead."""
        return self.sending.prehasher

    @property
    def counters(self) -> dict[str, int]:
        """A copy of the counters."""
        return self.book.counters() if self._parts is not None else {}

    @property
    def port(self) -> int:
        """The data listener's port."""
        return self._parts.sending.port if self._parts is not None else 0

    # -- extension interface ----------------------------------------------------------------

    async def start(self, node: NodeHost) -> None:
        """Load records, open the data listener and the control thread (off the loop)."""
        await asyncio.get_running_loop().run_in_executor(None, self._start, node)

    async def stop(self) -> None:
        """Stop the listener, the control thread and every stream."""
        await asyncio.get_running_loop().run_in_executor(None, self._stop)

    def on_message(self, session: PeerSession, message: Message) -> bool:
        """Queue file control messages for the control thread (loop thread)."""
        if not isinstance(message, FileOffer | FileAnswer | FileCancel):
            return False
        peer, nick, address = session.peer_id, session.peer_nick, session.address
        self.control.later(lambda: self._running().offers.handle(peer, nick, address, message))
        return True

    def set_nick(self, nick: str) -> None:
        """Nothing to do: the data connection asks `node.nick` when it needs it."""

    def on_event(self, event: Event) -> None:
        """Node events (event thread): offers go out again when a peer connects."""
        if event.name in ("peer_joined", "peer_updated"):
            peer_id, connected = event["peer"]["id"], bool(event["peer"].get("connected"))
            if connected:
                self.control.later(lambda: self._running().offers.peer_seen(peer_id, True))
        elif event.name == "peer_left":
            peer_id = event["peer"]["id"]
            self.control.later(lambda: self._running().offers.peer_left(peer_id))

    def stats(self) -> dict[str, Any]:
        """Counters and transfer counts by state."""
        if self._parts is None:
            return {"counters": {}, "states": {}, "active": 0, "port": 0}
        stats = self._parts.book.stats()
        stats["counters"].update(self._parts.sending.server.counters)
        return {**stats, "port": self.port}

    def _start(self, node: NodeHost) -> None:
        book = TransferBook(RecordStore(node.config.home), node.emit,
                            autoaccept=node.config.auto_accept)
        loaded = book.load(time.time())
        sending = SendingSide(book, node, self._hashes, stall_s=self.stall_s)
        receiving = ReceivingSide(book, node, self.control.later, stall_s=self.stall_s)
        offers = OfferControl(book, node, sending, receiving,
                              offer_timeout_s=self.offer_timeout_s)
        self._parts = _Parts(node, book, sending, receiving, offers)
        sending.start()
        offers.restore(loaded)  # before the control thread runs: then only it touches them
        self.control.start(offers.tick)

    def _stop(self) -> None:
        if self._parts is None:
            return
        end = time.monotonic() + STOP_JOIN_S
        parts = self._parts
        parts.book.stop_moving()  # every stream stops at its next chunk
        self.control.stop(end - time.monotonic())
        parts.receiving.stop(lambda: max(0.0, end - time.monotonic()))
        parts.sending.stop()
        parts.book.recorder.flush()

    # -- public API (any thread but the loop) -----------------------------------------------

    def offer(self, peer_ref: str, path: Path) -> Transfer:
        """Offer a file or folder to a peer; return the new transfer."""
        parts = self._running()
        t = parts.sending.offer(self._resolve(peer_ref), path)
        self.control.later(lambda: parts.offers.expect_answer(t.id))
        return t

    def accept(self, ref: str | None = None, dest: Path | None = None) -> Transfer:
        """Accept an offer (default: the latest pending) into `dest` or the downloads."""
        parts = self._running()
        return parts.receiving.accept(
            parts.book.find(ref, direction="in", states=(State.OFFERED, State.ACCEPTED)), dest)

    def decline(self, ref: str | None, reason: str = "") -> Transfer:
        """Decline a pending offer."""
        parts = self._running()
        return parts.receiving.decline(
            parts.book.find(ref, direction="in", states=(State.OFFERED,)), reason)

    def cancel(self, ref: str) -> Transfer:
        """Stop an unfinished transfer, either direction, and tell the peer."""
        parts = self._running()
        book = parts.book
        t = book.find(ref, states=(State.OFFERED, State.ACCEPTED))
        parts.node.send_control(t.peer, FileCancel(t.id, "cancelled"))
        t = book.finish(t, State.CANCELLED, "cancelled")
        self.control.later(lambda: delete_parts(book.get(t.id) or t))
        return t

    def set_autoaccept(self, peer_ref: str, on: bool) -> dict[str, Any]:
        """Accept (or stop accepting) this peer's offers without asking; persisted."""
        peer = self._resolve(peer_ref)
        self._running().book.set_autoaccept(peer["id"], on)
        return dict(peer)

    def autoaccept_peers(self) -> set[str]:
        """Peer ids whose offers are accepted without asking."""
        return self._running().book.autoaccept_peers()

    def transfers(self) -> list[dict[str, Any]]:
        """Every known transfer, oldest first, as plain dicts."""
        return self._running().book.rows() if self._parts is not None else []

    def find(self, ref: str | None, *, direction: str | None = None,
             states: tuple[State, ...] = ()) -> Transfer:
        """A transfer by list number or id prefix; with no ref, the latest that fits."""
        return self._running().book.find(ref, direction=direction, states=states)

    def get(self, transfer_id: str) -> Transfer | None:
        """The record of one transfer."""
        return self._running().book.get(transfer_id)

    def _resolve(self, peer_ref: str) -> dict[str, Any]:
        try:
            return self._running().node.resolve(peer_ref)
        except LookupError as exc:
            raise TransferError(str(exc).strip("'\"")) from None

    # -- the stream owners, for foreign peer kinds (a LocalSend upload or download) ---------

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """See `SendingSide.claim`."""
        return self.sending.claim(transfer, peer)

    def hashed(self, job: SendJob, index: int, stamp: str, digest: str) -> None:
        """See `SendingSide.hashed`."""
        self.sending.hashed(job, index, stamp, digest)

    def prehashed(self, path: str, alg: str) -> str | Partial | None:
        """See `SendingSide.prehashed`."""
        return self.sending.prehashed(path, alg)

    def sent(self, job: SendJob, digest: str, alg: str) -> None:
        """See `SendingSide.sent`."""
        self.sending.sent(job, digest, alg)

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """See `SendingSide.send_failed`."""
        self.sending.send_failed(job, error)

    def claim_receive(self, transfer_id: str, peer: str) -> RecvJob | str:
        """See `ReceivingSide.claim_receive`."""
        return self.receiving.claim_receive(transfer_id, peer)

    def file_complete(self, job: RecvJob, index: int, final: str, digest: str) -> None:
        """See `ReceivingSide.file_complete`."""
        self.receiving.file_complete(job, index, final, digest)

    def received(self, job: RecvJob, digest: str) -> None:
        """See `ReceivingSide.received`."""
        self.receiving.received(job, digest)

    def receive_failed(self, job: RecvJob, error: DataError) -> None:
        """See `ReceivingSide.receive_failed`."""
        self.receiving.receive_failed(job, error)

    def wanted(self, transfer: str, generation: int) -> bool:
        """Streams of either side ask this between chunks."""
        return self.book.wanted(transfer, generation)

    def progress(self, job: SendJob | RecvJob, done: int) -> None:
        """Throttled progress of a stream of either side."""
        if isinstance(job, SendJob):
            self.sending.progress(job, done)
        else:
            self.receiving.progress(job, done)


def attach(node: Node, **options: Any) -> TransferManager:
    """Add the transfer extension to a node (before start) and return it; idempotent."""
    for ext in node.extensions:
        if isinstance(ext, TransferManager):
            return ext
    defaults: dict[str, Callable[[], object]] = {
        "offer_timeout_s": lambda: _env_float("LANCHAT_OFFER_TIMEOUT_S", OFFER_TIMEOUT_S),
        "stall_s": lambda: _env_float("LANCHAT_FILE_STALL_S", STALL_S),
        "hashes": lambda: tuple(os.environ.get("LANCHAT_FILE_HASHES", "").split(",")),
    }
    for key, value in defaults.items():
        options.setdefault(key, value())
    manager = TransferManager(**options)
    node.add_extension(manager)
    node.subscribe(manager.on_event)
    return manager


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
