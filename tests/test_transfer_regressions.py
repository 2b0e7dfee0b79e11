"""File transfer regressions: what a careless or hostile peer, a race or a restart once
broke, each kept as one story.

In-process nodes on 127.0.0.1 only (mdns=False, beacon=False), as in tests/test_transfer.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanchat import protocol as p
from lanchat.transfer import TransferManager
from lanchat.transfer.records import Item, State, Transfer
from lanchat.transfer.stream import FileStreamer, Receiver, RecvItem, RecvJob, expect, write_frame
from lanchat.transfer.wire import _recv_exact
from nodes import wait_until
from transfer_peers import MiB, Pair, Peer, ReceiveSink, digest, open_pair, random_file, sha


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Peer]]:
    peers: list[Peer] = []
    yield peers
    for peer in reversed(peers):
        peer.close()


@pytest.fixture
def pair(tmp_path: Path, made: list[Peer]) -> Pair:
    """`pair(**options)`: bob listens, alice names him; both see each other."""

    def make(**options: Any) -> tuple[Peer, Peer]:
        return open_pair(tmp_path, made, options, options)

    return make


def drain(manager: TransferManager, timeout: float = 10.0) -> None:
    """Wait until the control thread has handled everything queued before this call."""
    done = threading.Event()
    manager.control.later(done.set)
    assert done.wait(timeout), "control thread did not get here"


class GatedStart(FileStreamer):
    """A sender that waits on `gate` before it answers a request (before file_start)."""

    gate: threading.Event = threading.Event()

    def run(self, request: p.FileRequest) -> None:
        self.gate.wait(20)
        super().run(request)


def gated(gate: threading.Event) -> type[FileStreamer]:
    return type("Gated", (GatedStart,), {"gate": gate})


# -- offers with the same name get their own files -------------------------------------

def test_two_same_named_offers_accepted_together_get_distinct_destinations(
        pair: Pair, tmp_path: Path) -> None:
    """Two offers of 'same.bin' accepted back to back get two names, each with its own bytes."""
    alice, bob = pair()
    gate = threading.Event()
    alice.files.server.streamer = gated(gate)  # type: ignore[union-attr]
    one = random_file(tmp_path / "a" / "same.bin", 3 * MiB)
    two = random_file(tmp_path / "b" / "same.bin", 3 * MiB)
    t1 = alice.files.offer("bob", one)
    t2 = alice.files.offer("bob", two)
    bob.log.wait("file_offer", count=2)
    try:
        r1 = bob.files.accept(t1.id)
        r2 = bob.files.accept(t2.id)
        dests = (r1.items[0].dest, r2.items[0].dest)
    finally:
        gate.set()
    # whatever happens next, every file reported as verified must hold what was verified
    bob.log.wait(None, lambda e: e.name in ("file_done", "file_failed")
                 and e["transfer"] in (t1.id, t2.id), timeout=15, count=2)  # both ended
    time.sleep(0.5)  # a window for a late stream thread to publish something it should not
    assert bob.log.named("file_done"), "neither transfer finished: nothing was checked"
    for ev in bob.log.named("file_done"):
        assert digest(Path(ev["path"]), ev["hash"]) == ev["digest"], \
            "published file differs from its digest"
    assert dests[0] != dests[1], f"both accepted offers write the same file: {dests}"


# -- auto-accept acts on the offer itself, never on a reference ------------------------

def test_autoaccept_does_not_accept_another_peers_offer_by_number(
        pair: Pair, tmp_path: Path, made: list[Peer]) -> None:
    """An auto-accepted peer's all-digit id never accepts another peer's offer by list number."""
    alice, bob = pair()
    carol = Peer(tmp_path / "carol", "carol", [f"127.0.0.1:{bob.node.port}"])
    made.append(carol)
    carol.log.wait("peer_joined")
    bob.log.wait("peer_joined", lambda e: e["peer"]["nick"] == "carol")
    bob.files.set_autoaccept("alice", True)
    tc = carol.files.offer("bob", random_file(tmp_path / "carol.bin", 4000))
    bob.log.wait("file_offer", lambda e: e["transfer"] == tc.id)
    number = next(r["number"] for r in bob.files.transfers() if r["transfer"] == tc.id)
    alice.node.send_control(bob.node.node_id,
                            p.FileOffer(str(number), "alice.bin", 10, None, (), 0))
    bob.log.wait("file_offer", lambda e: e["transfer"] == str(number))
    drain(bob.files)
    time.sleep(0.5)  # a window for a wrong accept to start streaming
    state = bob.files.get(tc.id).state  # type: ignore[union-attr]
    assert state is State.OFFERED, f"carol's offer was {state.value} without /accept"
    assert not (bob.node.config.downloads_dir / "carol.bin").exists()


def test_autoaccept_works_for_a_peer_transfer_id_with_capitals(
        pair: Pair, tmp_path: Path) -> None:
    """An auto-accepted peer's offer whose id has capitals is answered, not left pending."""
    alice, bob = pair()
    bob.files.set_autoaccept("alice", True)
    alice.node.send_control(bob.node.node_id,
                            p.FileOffer("ABCdef0123", "x.bin", 10, None, (), 0))
    bob.log.wait("file_offer", lambda e: e["transfer"] == "ABCdef0123")
    drain(bob.files)
    state = bob.files.get("ABCdef0123").state  # type: ignore[union-attr]
    assert state is not State.OFFERED, "auto-accepted peer's offer left pending"


# -- the offered SHA-256 is checked before publishing ----------------------------------

def test_a_file_that_does_not_match_the_offered_sha_is_not_left_in_downloads(
        pair: Pair, tmp_path: Path) -> None:
    """A file not matching the SHA-256 in its offer fails and leaves nothing in downloads."""
    alice, bob = pair()
    src = random_file(tmp_path / "doc.bin", 100_000)
    t = Transfer("shalie0001", "out", bob.node.node_id, "bob", "doc.bin", 100_000,
                 (Item("doc.bin", 100_000),),
                 sha256="0" * 64, source=str(src))
    alice.files.book.add(t)
    alice.files.sending.send_offer(t)
    bob.log.wait("file_offer", lambda e: e["transfer"] == t.id)
    bob.files.accept(t.id)
    failed = bob.log.wait("file_failed", lambda e: e["transfer"] == t.id)[0]
    assert "offered SHA-256" in failed["reason"]
    left = sorted(x.name for x in bob.node.config.downloads_dir.iterdir())
    assert left == [], f"unverified file left in downloads: {left}"


# -- what a peer can make us keep ------------------------------------------------------

def test_refused_offers_leave_nothing_behind(pair: Pair) -> None:
    """Offers refused over the pending limit leave no sender address behind."""
    alice, bob = pair()
    n = p.MAX_PENDING_OFFERS + 300
    for i in range(n):
        alice.node.send_control(bob.node.node_id,
                                p.FileOffer(f"flood{i:05d}", "x.bin", 1, None, (), 40000))
    wait_until(lambda: bob.files.counters.get("offers_refused", 0) >= 300, "300 refused", 20)
    drain(bob.files)
    assert bob.files.book.senders_kept() <= p.MAX_PENDING_OFFERS, (
        f"{bob.files.book.senders_kept()} sender addresses kept for "
        f"{p.MAX_PENDING_OFFERS} offers held")


def test_offer_and_cancel_cycles_do_not_grow_records_without_bound(pair: Pair) -> None:
    """Offering and cancelling in a loop leaves no record files for offers never accepted."""
    alice, bob = pair()
    cycles = 200
    files = tuple(p.FileEntry(f"dir/{'n' * 200}{i}", 1) for i in range(50))
    for i in range(cycles):
        tid = f"cyc{i:05d}"
        alice.node.send_control(bob.node.node_id,
                                p.FileOffer(tid, "folder", 50, None, files, 40000))
        alice.node.send_control(bob.node.node_id, p.FileCancel(tid, "oops"))
    bob.log.wait("file_failed", lambda e: e["transfer"].startswith("cyc"), count=cycles,
                 timeout=30)
    records = list((bob.node.config.home / "transfers").glob("*cyc*.json"))
    size = sum(r.stat().st_size for r in records)
    limit = 4 * p.MAX_PENDING_OFFERS
    assert len(records) <= limit, (
        f"{len(records)} records ({size // 1024} KiB) kept for offers never accepted")


def test_a_peer_transfer_id_cannot_overwrite_the_autoaccept_list(pair: Pair) -> None:
    """An offer with transfer id 'autoaccept' leaves the saved auto-accept list intact."""
    alice, bob = pair()
    bob.files.set_autoaccept("alice", True)
    assert alice.node.node_id in bob.files.records.autoaccept()  # type: ignore[union-attr]
    # alice is trusted: her offer is accepted, which is fine; what it overwrites is not
    alice.node.send_control(bob.node.node_id,
                            p.FileOffer("autoaccept", "x.bin", 1, None, (), 0))
    bob.log.wait("file_offer", lambda e: e["transfer"] == "autoaccept")
    drain(bob.files)
    ids = bob.files.records.autoaccept()  # type: ignore[union-attr]
    assert alice.node.node_id in ids, "the persisted auto-accept list was overwritten"


# -- the sender checks the receiver's hash ---------------------------------------------

def test_sender_does_not_report_done_when_the_receiver_hash_differs(
        pair: Pair, tmp_path: Path) -> None:
    """A receiver reporting a hash that is not the file's never makes the sender say done."""
    alice, bob = pair()
    src = random_file(tmp_path / "x.bin", 70_000)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    job = RecvJob(t.id, alice.node.node_id, "127.0.0.1", alice.files.port, 1, str(tmp_path),
                  (RecvItem("x.bin", 70_000, ("x.bin",)),), 0, None, 70_000)
    receiver = Receiver(job, bob.node.identity, "bob", ReceiveSink())
    tls = receiver._connect()
    try:
        write_frame(tls, p.FileRequest(t.id, 0, 0, None))
        expect(tls, p.FileStart)
        _recv_exact(tls, 70_000)
        end = expect(tls, p.FileEnd)
        assert end.digest == sha(src), "a request naming no hash is answered in SHA-256"
        write_frame(tls, p.FileDone(t.id, "0" * 64))
        try:  # the sender may say done or not; if it does, it must be with the right hash
            ev = alice.log.wait("file_done", lambda e: e["transfer"] == t.id, timeout=3)[0]
        except AssertionError:
            ev = None
    finally:
        tls.close()
    assert ev is None or ev["sha256"] == sha(src), (
        f"sender says done with {ev['digest'][:12]}..., its file is {sha(src)[:12]}...")


# -- progress events per time, not per file --------------------------------------------

def test_progress_is_throttled_for_a_folder_of_small_files(pair: Pair, tmp_path: Path) -> None:
    """A folder of 300 small files gives a few progress events a second, not two per file."""
    alice, bob = pair()
    src = tmp_path / "many"
    for i in range(300):
        random_file(src / f"f{i:04d}.txt", 10)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    start = time.monotonic()
    bob.files.accept(t.id)
    bob.log.wait("file_done", lambda e: e["transfer"] == t.id, timeout=20)
    seconds = time.monotonic() - start
    n = len([e for e in bob.log.named("file_progress") if e["transfer"] == t.id])
    assert n <= 4 * seconds + 6, f"{n} file_progress events in {seconds:.2f} s"


# -- a resume for a finished transfer is answered --------------------------------------

def test_resume_request_for_a_finished_transfer_is_answered(
        pair: Pair, tmp_path: Path, made: list[Peer]) -> None:
    """A receiver restarted after the sender cancelled asks to resume and hears 'cancelled'."""
    alice, bob = pair()
    gate = threading.Event()
    alice.files.server.streamer = gated(gate)  # type: ignore[union-attr]
    src = random_file(tmp_path / "x.bin", 50_000)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    home = bob.node.config.home
    try:
        bob.close()
        made.remove(bob)
        # alice cancels while bob is away; her cancel is lost (it only lives in memory)
        alice.files.book.finish(alice.files.get(t.id), State.CANCELLED, "cancelled")  # type: ignore[arg-type]
        bob2 = Peer(home, "bob", [f"127.0.0.1:{alice.node.port}"])
        made.append(bob2)
        bob2.log.wait("file_failed", lambda e: e["transfer"] == t.id
                      and not e.fields.get("resumable"), timeout=6)  # the sender's answer
    finally:
        gate.set()


# -- cancel before the first byte ------------------------------------------------------

def test_cancel_before_the_first_byte_leaves_no_part(pair: Pair, tmp_path: Path) -> None:
    """Cancelling before the first byte arrives leaves no .part in downloads."""
    alice, bob = pair()
    gate = threading.Event()
    alice.files.server.streamer = gated(gate)  # type: ignore[union-attr]
    t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 50_000))
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    wait_until(lambda: alice.files.book.moving(t.id), "the request claimed", 5)
    bob.files.cancel(t.id)
    drain(bob.files)
    drain(alice.files)
    gate.set()
    dl = bob.node.config.downloads_dir
    wait_until(lambda: alice.files.server._streams == 0, "streams ended", 5)  # type: ignore[union-attr]
    time.sleep(0.5)  # a window for a late receive thread to create a .part
    assert list(dl.glob("*.part")) == [], "orphan .part left by a cancelled transfer"


# -- unauthenticated connections cannot hold data slots --------------------------------

def test_a_trickling_unauthenticated_connection_is_dropped_in_a_few_seconds(
        pair: Pair, tmp_path: Path) -> None:
    """64 trickling unproven connections are dropped in seconds; a real transfer then goes."""
    alice, bob = pair(stall_s=1.0)
    stop = threading.Event()
    socks: list[socket.socket] = []

    def trickle(s: socket.socket) -> None:
        try:
            s.sendall(b"\x16\x03\x01\x40\x00")  # a TLS handshake record of 16 KiB follows
            while not stop.wait(0.3):
                s.sendall(b"\x01")
        except OSError:
            pass

    threads = []
    try:
        for _ in range(64):
            s = socket.create_connection(("127.0.0.1", alice.files.port))
            socks.append(s)
            th = threading.Thread(target=trickle, args=(s,), daemon=True)
            th.start()
            threads.append(th)
        server = alice.files.server
        assert server is not None
        wait_until(lambda: server._streams == 64, "64 connections held", 5)
        wait_until(lambda: server._streams == 0, "the unauthenticated connections dropped",
                   p.HANDSHAKE_TIMEOUT_S + 2, state=lambda: f"{server._streams} still held")
        src = random_file(tmp_path / "real.bin", 10_000)
        t = alice.files.offer("bob", src)
        bob.log.wait("file_offer")
        bob.files.accept(t.id)
        bob.log.wait("file_done", lambda e: e["transfer"] == t.id, timeout=5)  # a real one
    finally:
        stop.set()
        for s in socks:
            s.close()
        for th in threads:
            th.join(2)


# -- a file and a folder that become the same safe name --------------------------------

def test_a_file_and_a_folder_with_the_same_safe_name_both_arrive(
        pair: Pair, tmp_path: Path) -> None:
    """A file 'a.' and a folder 'a/' that clean to one name both arrive (folder numbered)."""
    alice, bob = pair()
    src = tmp_path / "tree"
    random_file(src / "a.", 100)
    random_file(src / "a" / "inner.txt", 100)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    bob.log.wait("file_done", lambda e: e["transfer"] == t.id, timeout=8)  # the folder too


# -- a cancel is final -----------------------------------------------------------------

def test_a_cancelled_receive_is_not_turned_into_done_later(pair: Pair, tmp_path: Path) -> None:
    """A receive that completes just after /cancel stays cancelled, with no file_done."""
    alice, bob = pair()
    gate = threading.Event()
    alice.files.server.streamer = gated(gate)  # type: ignore[union-attr]
    t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 5000))
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    wait_until(lambda: bob.files.book.moving(t.id), "the receive started", 5)
    job = RecvJob(t.id, alice.node.node_id, "127.0.0.1", 1, bob.files.book.generation(t.id),
                  "", (RecvItem("x.bin", 5000, ("x.bin",)),), 0, None, 5000)
    bob.files.book.finish(bob.files.get(t.id), State.CANCELLED, "cancelled")  # type: ignore[arg-type]
    bob.files.received(job, "0" * 64)  # what the stream thread does when its last frame lands
    gate.set()
    assert bob.files.get(t.id).state is State.CANCELLED  # type: ignore[union-attr]
    assert not [e for e in bob.log.named("file_done") if e["transfer"] == t.id]


# -- records are not rewritten per received file ---------------------------------------

def test_a_folder_of_small_files_does_not_rewrite_the_whole_record_per_file(
        pair: Pair, tmp_path: Path) -> None:
    """Receiving 300 small files rewrites the transfer record a few times, not per file."""
    alice, bob = pair()
    src = tmp_path / "many"
    n = 300
    for i in range(n):
        random_file(src / f"f{i:04d}.txt", 10)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    records = bob.files.records
    assert records is not None
    written = [0]
    original = records.save

    def counting(transfer: Transfer) -> None:
        if transfer.id == t.id:
            written[0] += len(str(transfer.to_json()))
        original(transfer)

    records.save = counting  # type: ignore[method-assign]
    bob.files.accept(t.id)
    bob.log.wait("file_done", lambda e: e["transfer"] == t.id, timeout=60)
    final = len(str(bob.files.get(t.id).to_json()))  # type: ignore[union-attr]
    assert written[0] <= 20 * final, (
        f"{written[0] // 1024} KiB of record JSON written for a {final // 1024} KiB record "
        f"of {n} files")


# -- stream threads end with the node --------------------------------------------------

def test_closing_the_node_ends_its_receive_threads(pair: Pair, tmp_path: Path,
                                                   made: list[Peer]) -> None:
    """Closing the node ends its receive threads at once, even those waiting for data."""
    alice, bob = pair()
    gate = threading.Event()
    alice.files.server.streamer = gated(gate)  # type: ignore[union-attr]
    t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 5000))
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    wait_until(lambda: alice.files.server._streams == 1, "one stream", 5)  # type: ignore[union-attr]
    before = {th for th in threading.enumerate() if th.name == "lanchat-files-recv"}
    assert before
    try:
        bob.close()
        made.remove(bob)
        wait_until(lambda: not any(th.is_alive() for th in before),
                   "receive thread ended after node.close()", 3)
    finally:
        gate.set()
