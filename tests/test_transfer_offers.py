"""The offer rules, driven without a network or threads: `OfferControl` over a real book
(records in a temporary home), a recording node and recording sides (the `Offering` and
`Answering` seams). Time is what `tick(now)` is given, so expiry and retries need no
waiting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from lanchat.api import NodeHost
from lanchat.protocol import MAX_PENDING_OFFERS, FileAnswer, FileCancel, FileOffer, Message
from lanchat.transfer.book import TransferBook
from lanchat.transfer.offers import RESUME_RETRIES, RESUME_RETRY_S, OfferControl
from lanchat.transfer.records import Item, RecordStore, State, Transfer, TransferError

PEER, OTHER = "a" * 52, "b" * 52
TIMEOUT_S = 60.0


class Node:
    """What the offers say to peers and to listeners."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def send_control(self, peer_id: str, message: Message) -> None:
        self.sent.append((peer_id, message))

    def emit(self, name: str, /, **fields: Any) -> None:
        self.events.append((name, fields))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for n, fields in self.events if n == name]


class Sending:
    hashes = ("sha256",)

    def __init__(self) -> None:
        self.offered: list[str] = []

    def send_offer(self, t: Transfer) -> None:
        self.offered.append(t.id)


class Receiving:
    def __init__(self) -> None:
        self.refuse = ""
        self.accepted: list[str] = []
        self.declined: list[tuple[str, str]] = []
        self.started: list[str] = []

    def accept(self, t: Transfer, dest: Path | None = None) -> Transfer:
        if self.refuse:
            raise TransferError(self.refuse)
        self.accepted.append(t.id)
        return t

    def decline(self, t: Transfer, reason: str = "") -> Transfer:
        self.declined.append((t.id, reason))
        return t

    def start(self, transfer_id: str) -> None:
        self.started.append(transfer_id)


class Parts:
    def __init__(self, home: Path) -> None:
        self.node = Node()
        self.book = TransferBook(RecordStore(home), self.node.emit)
        self.sending = Sending()
        self.receiving = Receiving()
        self.offers = OfferControl(self.book, cast(NodeHost, self.node), self.sending,
                                   self.receiving, offer_timeout_s=TIMEOUT_S)

    def offer(self, tid: str, peer: str = PEER, port: int = 4000) -> None:
        self.offers.handle(peer, "alice", "10.0.0.1", FileOffer(tid, "a.bin", 10, None, (),
                                                                  port))


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return Parts(tmp_path)


def test_an_unanswered_offer_expires_once_at_its_deadline(parts: Parts) -> None:
    parts.offer("t1")
    assert parts.node.named("file_offer")[0]["number"] == 1
    assert parts.book.knows_sender("t1")
    parts.offers.tick(time.monotonic() + TIMEOUT_S / 2)
    assert parts.book.get("t1").state is State.OFFERED  # type: ignore[union-attr]
    parts.offers.tick(time.monotonic() + TIMEOUT_S + 1)
    parts.offers.tick(time.monotonic() + TIMEOUT_S + 2)
    assert [f["reason"] for f in parts.node.named("file_failed")] == ["timeout"]
    assert (PEER, FileCancel("t1", "timeout")) in parts.node.sent
    assert parts.book.get("t1").state is State.FAILED  # type: ignore[union-attr]
    assert parts.book.senders_kept() == 0


def test_an_answered_offer_outlives_its_deadline(parts: Parts) -> None:
    t = parts.book.add(Transfer("o1", "out", PEER, "bob", "a.bin", 10, (Item("a.bin", 10),)))
    parts.offers.expect_answer(t.id)
    parts.offers.handle(PEER, "bob", "10.0.0.2", FileAnswer("o1", True, (0, 0)))
    parts.offers.tick(time.monotonic() + TIMEOUT_S + 1)
    assert parts.book.get("o1").state is State.ACCEPTED  # type: ignore[union-attr]
    assert parts.node.named("file_failed") == []


def test_offers_over_the_pending_limit_are_refused_and_keep_nothing(parts: Parts) -> None:
    for i in range(MAX_PENDING_OFFERS + 5):
        parts.offer(f"f{i:04d}")
    refused = [m for _, m in parts.node.sent if isinstance(m, FileAnswer) and not m.accept]
    assert [m.reason for m in refused] == ["too many pending offers"] * 5
    assert parts.book.counters()["offers_refused"] == 5
    assert parts.book.senders_kept() == MAX_PENDING_OFFERS
    parts.offer("f0000", peer=OTHER)  # another peer's id: refused, the record stays ours
    assert parts.book.get("f0000").peer == PEER  # type: ignore[union-attr]
    assert parts.book.counters()["offers_refused"] == 6


def test_autoaccept_accepts_or_declines_with_the_reason(parts: Parts) -> None:
    parts.book.set_autoaccept(PEER, True)
    parts.offer("t1")
    parts.receiving.refuse = "not enough space"
    parts.offer("t2")
    parts.offer("t3", peer=OTHER)
    assert parts.receiving.accepted == ["t1"]
    assert parts.receiving.declined == [("t2", "not enough space")]


def test_a_connecting_peer_is_offered_again_once_per_connection(parts: Parts) -> None:
    parts.book.add(Transfer("o1", "out", PEER, "bob", "a.bin", 10, (Item("a.bin", 10),)))
    parts.book.add(Transfer("o2", "out", PEER, "bob", "b.bin", 10, (Item("b.bin", 10),),
                            state=State.DONE))
    parts.offers.peer_seen(PEER, True)
    parts.offers.peer_seen(PEER, True)  # a nick change, say: the same connection
    assert parts.sending.offered == ["o1"]
    parts.offers.peer_left(PEER)
    parts.offers.peer_seen(PEER, True)
    assert parts.sending.offered == ["o1", "o1"]


def test_an_idle_accepted_transfer_asks_its_connected_sender_a_few_times(
        parts: Parts, tmp_path: Path) -> None:
    parts.book.add(Transfer("i1", "in", PEER, "alice", "a.bin", 10, (Item("a.bin", 10),),
                            state=State.ACCEPTED, dest_dir=str(tmp_path)))
    now = time.monotonic()

    def asks() -> int:
        return sum(1 for _, m in parts.node.sent
                   if isinstance(m, FileAnswer) and m.reason == "resume")

    parts.offers.tick(now)
    parts.offers.tick(now + RESUME_RETRY_S)
    assert asks() == 0  # the sender is not connected
    parts.offers.peer_seen(PEER, True)
    for i in range(RESUME_RETRIES + 2):
        parts.offers.tick(now + RESUME_RETRY_S * (i + 2))
    assert asks() == RESUME_RETRIES
    parts.offers.peer_left(PEER)
    parts.offers.peer_seen(PEER, True)  # a new connection: a few more tries
    for i in range(2):
        parts.offers.tick(now + RESUME_RETRY_S * (i + 10))
    assert asks() == RESUME_RETRIES + 1


def test_a_repeated_offer_restarts_the_receive_only_when_nothing_moves_it(
        parts: Parts, tmp_path: Path) -> None:
    parts.offer("t1")
    t = parts.book.get("t1")
    assert t is not None
    parts.book.add(t.with_(state=State.ACCEPTED, dest_dir=str(tmp_path)))
    claimed = parts.book.start_receive("t1")
    assert claimed is not None
    parts.offer("t1", port=4001)  # the sender restarted while our stream runs
    assert parts.receiving.started == []
    current, _, again = parts.book.stream_ended("t1", claimed[1])
    assert current and again  # the stream that dropped is started again
    parts.offer("t1", port=4002)
    assert parts.receiving.started == ["t1"]


def test_once_stopping_no_stream_may_claim_a_transfer(parts: Parts, tmp_path: Path) -> None:
    parts.offer("t1")
    t = parts.book.get("t1")
    assert t is not None
    parts.book.add(t.with_(state=State.ACCEPTED, dest_dir=str(tmp_path)))
    parts.book.add(Transfer("o1", "out", OTHER, "bob", "a.bin", 10, (Item("a.bin", 10),)))
    claimed = parts.book.start_receive("t1")
    assert claimed is not None and parts.book.wanted("t1", claimed[1])
    parts.book.stop_moving()
    assert not parts.book.wanted("t1", claimed[1])  # the stream stops at its next chunk
    assert parts.book.start_receive("t1") is None
    assert parts.book.claim_receive("t1", PEER) == "the node is stopping"
    assert parts.book.claim_send("o1", OTHER) == "the node is stopping"
    assert parts.book.get("o1").state is State.OFFERED  # type: ignore[union-attr]


def test_ending_a_transfer_that_ended_meanwhile_keeps_how_it_ended(parts: Parts) -> None:
    """A caller holding an older copy (a /cancel that overlaps the stream's end, a
    timeout) does not turn a transfer that was declined meanwhile into another ending, nor
    say `file_failed` twice."""
    parts.offer("t1")
    stale = parts.book.get("t1")
    assert stale is not None and stale.state is State.OFFERED
    parts.book.finish(stale, State.DECLINED, "declined")
    ended = parts.book.finish(stale, State.CANCELLED, "cancelled")
    assert ended.state is State.DECLINED
    assert parts.book.get("t1").state is State.DECLINED  # type: ignore[union-attr]
    assert [f["reason"] for f in parts.node.named("file_failed")] == ["declined"]
