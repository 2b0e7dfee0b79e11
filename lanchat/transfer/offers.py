"""Control messages from peers: offers, answers, cancels, repeated offers and expiry.

`OfferControl` runs only on the control thread (control.py); what it owns, the answer
deadlines of offers, the resume retries and which peers are connected, is touched by no
other thread, so it takes no lock. Records live in the book (book.py); a deadline that
outlives its offer (answered, cancelled) is dropped when it comes due. It sees the two
sides through `Offering` and `Answering`, so it can be driven without streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from lanchat.api import NodeHost
from lanchat.protocol import (
    MAX_PENDING_OFFERS,
    FileAnswer,
    FileCancel,
    FileOffer,
    Message,
)
from lanchat.transfer.book import TransferBook
from lanchat.transfer.hashing import choose
from lanchat.transfer.plan import delete_parts
from lanchat.transfer.records import Item, State, Transfer, TransferError

log = logging.getLogger(__name__)

OFFER_TIMEOUT_S = 300.0
RESUME_RETRY_S = 5.0  # an idle accepted transfer asks its connected sender again this often
RESUME_RETRIES = 3  # ... at most this many times per connection


class Offering(Protocol):
    """The sending side, as offers use it (sending.SendingSide)."""

    @property
    def hashes(self) -> tuple[str, ...]:
        """Digests this node can make, best first."""
        ...

    def send_offer(self, t: Transfer) -> None:
        """(Re)send the offer of an outgoing transfer."""
        ...


class Answering(Protocol):
    """The receiving side, as offers use it (receiving.ReceivingSide)."""

    def accept(self, t: Transfer, dest: Path | None = None) -> Transfer:
        """Accept an offer (raises TransferError when it cannot be)."""
        ...

    def decline(self, t: Transfer, reason: str = "") -> Transfer:
        """Say no to an offer."""
        ...

    def start(self, transfer_id: str) -> None:
        """Start fetching an accepted transfer (control thread)."""
        ...


class OfferControl:
    """Answers what peers say about offers, expires them, retries resumes."""

    def __init__(self, book: TransferBook, node: NodeHost, sending: Offering,
                 receiving: Answering, *, offer_timeout_s: float = OFFER_TIMEOUT_S) -> None:
        self.book = book
        self.node = node
        self.sending = sending
        self.receiving = receiving
        self.offer_timeout_s = offer_timeout_s
        self._deadlines: dict[str, float] = {}  # offered transfer -> when it expires
        self._retried: dict[str, tuple[str, float, int]] = {}  # id -> (peer, last, asks)
        self._connected: set[str] = set()

    def expect_answer(self, transfer_id: str, created: float | None = None) -> None:
        """Expire this offer OFFER_TIMEOUT_S after it was made (now, or at `created`)."""
        left = self.offer_timeout_s
        if created is not None:
            left = max(0.0, created + self.offer_timeout_s - time.time())
        self._deadlines[transfer_id] = time.monotonic() + left

    def restore(self, loaded: Iterable[Transfer]) -> None:
        """After a restart: expire the offers that wait, offer again what we send, and
        ask again for what we accepted."""
        for t in loaded:
            if t.state is State.OFFERED:
                self.expect_answer(t.id, t.created)
            if t.state.finished:
                continue
            if t.direction == "out":
                self.sending.send_offer(t)
            elif t.state is State.ACCEPTED:
                self.node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))

    def handle(self, peer: str, nick: str, address: str, message: Message) -> None:
        """A file control message from a peer."""
        if isinstance(message, FileOffer):
            self._on_offer(peer, nick, address, message)
            return
        t = self.book.get(message.transfer)  # type: ignore[attr-defined]
        if t is None or t.peer != peer:
            self.book.count("control_unknown_transfer")
            return
        if isinstance(message, FileAnswer):
            self._on_answer(t, message)
        elif isinstance(message, FileCancel):
            self._on_cancel(t, message)

    def _on_offer(self, peer: str, nick: str, address: str, offer: FileOffer) -> None:
        sender = (address, offer.port) if offer.port else None
        try:
            t, pending = self.book.incoming(offer.transfer, peer, sender)
        except TransferError:
            self.book.count("offers_refused")
            return
        if t is not None:
            self._repeat_offer(t)
            return
        if pending >= MAX_PENDING_OFFERS:
            self._refuse(peer, offer, "too many pending offers")
            return
        if offer.files:
            items = tuple(Item(f.path, f.size) for f in offer.files)
            if sum(f.size for f in offer.files) != offer.size:
                self._refuse(peer, offer, "file sizes do not add up")
                return
        else:
            items = (Item(offer.name, offer.size),)
        t = self.book.add(Transfer(offer.transfer, "in", peer, nick, offer.name, offer.size,
                                   items, folder=bool(offer.files), sha256=offer.sha256,
                                   hash=choose(offer.hashes, self.sending.hashes,
                                               claimed=offer.sha256 is not None)),
                          sender=sender)
        self.expect_answer(t.id)
        self.book.count("offers_in")
        self.node.emit("file_offer", transfer=t.id, **{"from": {"id": peer, "nick": nick}},
                       name=t.name, size=t.size, sha256=t.sha256, hash=t.hash,
                       files=len(items), folder=t.folder, number=self.book.number(t.id))
        if self.book.autoaccepts(peer):  # by the record itself: ids are not references
            try:
                self.receiving.accept(t)
            except TransferError as exc:
                self.receiving.decline(t, str(exc))

    def _refuse(self, peer: str, offer: FileOffer, reason: str) -> None:
        self.book.count("offers_refused")
        self.node.send_control(peer, FileAnswer(offer.transfer, False, reason=reason))

    def _repeat_offer(self, t: Transfer) -> None:
        """The sender offered again (it reconnected or restarted): resume if we accepted."""
        if t.state is State.ACCEPTED or t.state is State.DONE:
            if self.book.note_reoffer(t.id):
                return
            if not self.book.knows_sender(t.id) and t.state is State.ACCEPTED:
                self.book.finish(t, State.FAILED, "the sender gave no data port")
                self.node.send_control(t.peer, FileCancel(t.id, "no data port in the offer"))
                return
            self.receiving.start(t.id)
        elif t.state.finished:
            self.node.send_control(t.peer, FileCancel(t.id, (t.reason or t.state.value)[:200]))

    def _on_answer(self, t: Transfer, answer: FileAnswer) -> None:
        if t.direction != "out":
            self.book.count("control_unknown_transfer")
            return
        if not answer.accept:
            if not t.state.finished:
                self.book.finish(t, State.DECLINED, "declined",
                                 detail=answer.reason or "the peer said no")
            return
        if t.state is State.OFFERED:
            self._deadlines.pop(t.id, None)
            self.book.add(t.with_(state=State.ACCEPTED))
            if answer.reason == "resume":  # the receiver does not know our port yet
                self.sending.send_offer(t)
        elif t.state is State.ACCEPTED:
            if not self.book.moving(t.id):
                self.sending.send_offer(t)
        elif t.state is State.DONE:  # it missed our end: offer again, it confirms
            self.sending.send_offer(t)
        else:  # it asks again for what we ended while it was away: tell it so
            self.node.send_control(t.peer, FileCancel(t.id, (t.reason or t.state.value)[:200]))

    def _on_cancel(self, t: Transfer, cancel: FileCancel) -> None:
        if t.state.finished:
            return
        if cancel.reason == "timeout":
            t = self.book.finish(t, State.FAILED, "timeout")
        else:
            t = self.book.finish(t, State.CANCELLED, "cancelled by peer", detail=cancel.reason)
        delete_parts(t)

    def peer_seen(self, peer: str, connected: bool) -> None:
        """A peer joined or changed: offer again what it has not taken when it connects."""
        if not connected:
            return
        if peer in self._connected:
            return
        self._connected.add(peer)
        for tid in [k for k, (p, _, _) in self._retried.items() if p == peer]:
            del self._retried[tid]  # a new connection: a few more tries, later
        for t in self.book.select(direction="out", peer=peer, idle=True):
            if not t.state.finished:
                self.sending.send_offer(t)

    def peer_left(self, peer: str) -> None:
        """A peer left."""
        self._connected.discard(peer)

    def tick(self, now: float) -> None:
        """Expire offers nobody answered, ask idle senders again."""
        self._retry_idle(now)
        due = [tid for tid, when in self._deadlines.items() if when <= now]
        for tid in due:
            del self._deadlines[tid]
            t = self.book.get(tid)
            if t is not None and t.state is State.OFFERED:
                self.book.finish(t, State.FAILED, "timeout")
                self.node.send_control(t.peer, FileCancel(t.id, "timeout"))

    def _retry_idle(self, now: float) -> None:
        """An accepted incoming transfer that nothing moves while its sender is connected
        asks the sender again every RESUME_RETRY_S, a few times per connection (the sender
        answers with a fresh offer, so a data port gone stale with a restart is replaced):
        a re-offer lost in a race must not leave the transfer waiting for ever."""
        accepted = self.book.select(direction="in", states=(State.ACCEPTED,))
        keep = {t.id for t in accepted}
        for tid in [k for k in self._retried if k not in keep]:
            del self._retried[tid]  # it finished
        for t in accepted:
            if t.peer not in self._connected or self.book.moving(t.id):
                continue
            _, when, count = self._retried.setdefault(t.id, (t.peer, now, 0))
            if count < RESUME_RETRIES and now - when >= RESUME_RETRY_S:
                self._retried[t.id] = (t.peer, now, count + 1)
                self.node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))
