"""Control messages from peers: offers, answers, cancels, repeated offers and expiry.

They run on the control thread (queued by `TransferManager.on_message`).
"""

from __future__ import annotations

import logging
import time

from lanchat.protocol import (
    MAX_PENDING_OFFERS,
    FileAnswer,
    FileCancel,
    FileOffer,
    Message,
)
from lanchat.transfer.core import RESUME_RETRIES, RESUME_RETRY_S, ManagerCore, TransferError
from lanchat.transfer.hashing import choose
from lanchat.transfer.records import Item, State, Transfer

log = logging.getLogger("lanchat.transfer.manager")


class OfferControl(ManagerCore):
    """Answers what peers say about offers (control thread)."""

    def _handle(self, peer: str, nick: str, address: str, message: Message) -> None:
        if isinstance(message, FileOffer):
            self._on_offer(peer, nick, address, message)
            return
        with self._lock:
            t = self._transfers.get(message.transfer)  # type: ignore[attr-defined]
        if t is None or t.peer != peer:
            self._count("control_unknown_transfer")
            return
        if isinstance(message, FileAnswer):
            self._on_answer(t, message)
        elif isinstance(message, FileCancel):
            self._on_cancel(t, message)

    def _on_offer(self, peer: str, nick: str, address: str, offer: FileOffer) -> None:
        with self._lock:
            t = self._transfers.get(offer.transfer)
            if t is not None and (t.peer != peer or t.direction != "in"):
                self._count("offers_refused")
                return
            if t is None:
                pending = sum(1 for x in self._transfers.values() if x.peer == peer
                              and x.direction == "in" and x.state is State.OFFERED)
            elif offer.port and t.state in (State.OFFERED, State.ACCEPTED, State.DONE):
                self._senders[offer.transfer] = (address, offer.port)
        if t is not None:
            self._repeat_offer(t)
            return
        if pending >= MAX_PENDING_OFFERS:
            self._count("offers_refused")
            self.node.send_control(peer, FileAnswer(offer.transfer, False,
                                                    reason="too many pending offers"))
            return
        if offer.files:
            items = tuple(Item(f.path, f.size) for f in offer.files)
            if sum(f.size for f in offer.files) != offer.size:
                self._count("offers_refused")
                self.node.send_control(peer, FileAnswer(offer.transfer, False,
                                                        reason="file sizes do not add up"))
                return
        else:
            items = (Item(offer.name, offer.size),)
        t = self._save(Transfer(offer.transfer, "in", peer, nick, offer.name, offer.size,
                                items, folder=bool(offer.files), sha256=offer.sha256,
                                hash=choose(offer.hashes, self.hashes,
                                            claimed=offer.sha256 is not None)))
        with self._lock:
            if offer.port:  # kept only for offers we hold; dropped when they finish
                self._senders[t.id] = (address, offer.port)
            self._deadlines[t.id] = time.monotonic() + self.offer_timeout_s
        self._count("offers_in")
        self._emit("file_offer", transfer=t.id, **{"from": {"id": peer, "nick": nick}},
                   name=t.name, size=t.size, sha256=t.sha256, hash=t.hash, files=len(items),
                   folder=t.folder, number=self._numbers[t.id])
        if peer in self._autoaccept:  # by the record itself: ids are not references
            try:
                self._accept(t)
            except TransferError as exc:
                self._decline(t, str(exc))

    def _repeat_offer(self, t: Transfer) -> None:
        """The sender offered again (it reconnected or restarted): resume if we accepted."""
        if t.state is State.ACCEPTED or t.state is State.DONE:
            with self._lock:
                if t.id in self._active:
                    self._reoffered.add(t.id)
                    return
                known = t.id in self._senders
            if not known and t.state is State.ACCEPTED:
                self._finish(t, State.FAILED, "the sender gave no data port")
                self.node.send_control(t.peer, FileCancel(t.id, "no data port in the offer"))
                return
            self._start_receiver(t)
        elif t.state.finished:
            self.node.send_control(t.peer, FileCancel(t.id, (t.reason or t.state.value)[:200]))

    def _on_answer(self, t: Transfer, answer: FileAnswer) -> None:
        if t.direction != "out":
            self._count("control_unknown_transfer")
            return
        if not answer.accept:
            if not t.state.finished:
                self._finish(t, State.DECLINED, "declined",
                             detail=answer.reason or "the peer said no")
            return
        if t.state is State.OFFERED:
            with self._lock:
                self._deadlines.pop(t.id, None)
            self._save(t.with_(state=State.ACCEPTED))
            if answer.reason == "resume":  # the receiver does not know our port yet
                self._send_offer(t)
        elif t.state is State.ACCEPTED:
            with self._lock:
                busy = t.id in self._active
            if not busy:
                self._send_offer(t)
        elif t.state is State.DONE:  # it missed our end: offer again, it confirms
            self._send_offer(t)
        else:  # it asks again for what we ended while it was away: tell it so
            self.node.send_control(t.peer, FileCancel(t.id, (t.reason or t.state.value)[:200]))

    def _on_cancel(self, t: Transfer, cancel: FileCancel) -> None:
        if t.state.finished:
            return
        if cancel.reason == "timeout":
            self._finish(t, State.FAILED, "timeout")
        else:
            self._finish(t, State.CANCELLED, "cancelled by peer", detail=cancel.reason)
        self._delete_parts(t)

    def _retry_idle(self, now: float) -> None:
        """An accepted incoming transfer that nothing moves while its sender is connected
        asks the sender again every RESUME_RETRY_S, a few times per connection (the sender
        answers with a fresh offer, so a data port gone stale with a restart is replaced):
        a re-offer lost in a race must not leave the transfer waiting for ever."""
        with self._lock:
            idle = [t for t in self._transfers.values() if t.direction == "in"
                    and t.state is State.ACCEPTED and t.id not in self._active
                    and t.peer in self._connected]
            due = []
            for t in idle:
                when, count = self._retried.setdefault(t.id, (now, 0))
                if count < RESUME_RETRIES and now - when >= RESUME_RETRY_S:
                    self._retried[t.id] = (now, count + 1)
                    due.append(t)
        for t in due:
            self.node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))

    def _peer_connected(self, peer: str) -> None:
        with self._lock:
            for tid in [k for k, t in self._transfers.items() if t.peer == peer]:
                self._retried.pop(tid, None)  # a new connection: a few more tries, later
            todo = [t for t in self._transfers.values() if t.peer == peer
                    and t.direction == "out" and not t.state.finished
                    and t.id not in self._active]
        for t in todo:
            self._send_offer(t)

    def _expire(self, now: float) -> None:
        self._retry_idle(now)
        with self._lock:
            due = [tid for tid, when in self._deadlines.items() if when <= now]
            for tid in due:
                self._deadlines.pop(tid, None)
        for tid in due:
            with self._lock:
                t = self._transfers.get(tid)
            if t is not None and t.state is State.OFFERED:
                self._finish(t, State.FAILED, "timeout")
                self.node.send_control(t.peer, FileCancel(t.id, "timeout"))

