"""File transfer between two in-process nodes on 127.0.0.1: the user's stories and the
bad senders (built from our own classes), with the events a script would see."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import skip_unless_required
from lanchat import protocol as p
from lanchat.commands import Context, build_registry, execute
from lanchat.identity import Identity
from lanchat.plugins import Plugins
from lanchat.transfer import commands as transfer_commands
from lanchat.transfer.hashing import new_hasher
from lanchat.transfer.records import Item, Transfer
from lanchat.transfer.stream import FileStreamer, Receiver, RecvItem, RecvJob, SendJob
from transfer_peers import MiB, Pair, Peer, ReceiveSink, digest, open_pair, random_file, sha


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """`pair(**options)`: bob listens, alice names him; both see each other."""
    made: list[Peer] = []

    def make(**options: Any) -> tuple[Peer, Peer]:
        return open_pair(tmp_path, made, options, options)

    yield make
    for peer in reversed(made):
        peer.close()


def assert_chat_works(alice: Peer, bob: Peer) -> None:
    """The nodes still talk after a transfer failed."""
    msg_id = alice.node.send("bob", "still here?")
    bob.log.wait("message", lambda e: e["id"] == msg_id)
    alice.log.wait("delivered", lambda e: e["id"] == msg_id)


def test_bob_accepts_alices_file_and_both_see_it_verified(pair: Pair, tmp_path: Path) -> None:
    """Alice offers a file; bob sees the offer, accepts the latest; both get file_done."""
    alice, bob = pair()
    src = random_file(tmp_path / "report.bin", 3 * MiB + 17)
    t = alice.files.offer("bob", src)
    offer = bob.log.wait("file_offer")[0]
    assert offer["transfer"] == t.id and offer["name"] == "report.bin"
    assert offer["size"] == src.stat().st_size and offer["sha256"] is None
    assert offer["from"]["nick"] == "alice"
    assert not (bob.node.config.downloads_dir / "report.bin").exists(), "nothing before accept"
    bob.files.accept()
    got = bob.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    out = alice.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    assert got["direction"] == "in" and out["direction"] == "out"
    assert got["hash"] == out["hash"] == "blake3", "two lanchat peers agree on BLAKE3"
    assert got["digest"] == out["digest"] == digest(src)
    assert got["sha256"] is None and out["sha256"] is None, "never a BLAKE3 digest in sha256"
    assert Path(got["path"]) == bob.node.config.downloads_dir / "report.bin"
    assert sha(Path(got["path"])) == sha(src)
    assert not list(bob.node.config.downloads_dir.glob("*.part"))
    progress = bob.log.named("file_progress")
    assert progress and progress[-1]["done"] == src.stat().st_size


def test_a_second_file_with_the_same_name_never_overwrites(pair: Pair, tmp_path: Path) -> None:
    """Bob already has report.txt: alice's lands as 'report (1).txt'."""
    alice, bob = pair()
    dl = bob.node.config.downloads_dir
    dl.mkdir(parents=True)
    (dl / "report.txt").write_text("bob's own")
    src = tmp_path / "report.txt"
    src.write_text("alice's")
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    done = bob.log.wait("file_done")[0]
    assert Path(done["path"]).name == "report (1).txt"
    assert (dl / "report.txt").read_text() == "bob's own"


def test_a_folder_arrives_with_its_tree_and_hostile_names_stay_inside(
        pair: Pair, tmp_path: Path) -> None:
    """A folder keeps its relative paths; the tree hash matches on both sides."""
    alice, bob = pair()
    src = tmp_path / "photos"
    (src / "2024" / "summer").mkdir(parents=True)
    (src / "a.jpg").write_bytes(os.urandom(1000))
    (src / "2024" / "summer" / "b.jpg").write_bytes(os.urandom(2 * MiB))
    (src / "2024" / "empty.txt").write_bytes(b"")
    (src / "CON").write_text("reserved name")
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer", lambda e: e["folder"] and e["files"] == 4)
    dest = tmp_path / "inbox"
    bob.files.accept(t.id, dest)
    done = bob.log.wait("file_done")[0]
    out = alice.log.wait("file_done")[0]
    assert done["digest"] == out["digest"]
    root = Path(done["path"])
    assert root == dest / "photos"
    assert sha(root / "2024" / "summer" / "b.jpg") == sha(src / "2024" / "summer" / "b.jpg")
    assert (root / "2024" / "empty.txt").read_bytes() == b""
    assert (root / "_CON").read_text() == "reserved name"


def test_an_offer_with_escaping_paths_lands_inside_the_chosen_folder(
        pair: Pair, tmp_path: Path) -> None:
    """A sender whose offer names '../../x' and '/etc/passwd' still writes only inside."""
    alice, bob = pair()
    src = tmp_path / "evil"
    src.mkdir()
    (src / "one").write_text("1")
    (src / "two").write_text("2")
    # a record alice serves and offers with hostile paths (her own code would not)
    t = Transfer("hostile01", "out", bob.node.node_id, "bob", "../..", 2,
                 (Item("../../escaped", 1), Item("/etc/passwd", 1)), folder=True,
                 source=str(src))
    real = {"../../escaped": "one", "/etc/passwd": "two"}
    alice.files.book.add(t)
    original_claim = alice.files.sending.claim

    def claim(transfer: str, peer: str) -> Any:
        job = original_claim(transfer, peer)
        if isinstance(job, str):
            return job
        files = tuple((str(src / real[path]), size) for path, (_, size)
                      in zip(job.paths, job.files, strict=True))
        return type(job)(job.transfer, job.peer, job.generation, files, job.paths, job.total)

    alice.files.sending.claim = claim  # type: ignore[method-assign]
    alice.files.sending.send_offer(t)
    bob.log.wait("file_offer", lambda e: e["name"] == "../..")
    dest = tmp_path / "inbox" / "deep"
    bob.files.accept(t.id, dest)
    done = bob.log.wait("file_done")[0]
    root = Path(done["path"])
    assert root.parent == dest and root.name == "untitled"
    assert (root / "escaped").read_text() == "1"
    assert (root / "etc" / "passwd").read_text() == "2"
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "inbox" / "escaped").exists()


def test_bob_declines_and_both_sides_hear_it(pair: Pair, tmp_path: Path) -> None:
    """/decline: alice gets file_failed 'declined'; nothing is written."""
    alice, bob = pair()
    t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 1000))
    bob.log.wait("file_offer")
    bob.files.decline(t.id, "no thanks")
    failed = alice.log.wait("file_failed")[0]
    assert failed["transfer"] == t.id and failed["reason"] == "declined"
    assert failed["detail"] == "no thanks"
    assert bob.log.wait("file_failed")[0]["reason"] == "declined"
    assert not bob.node.config.downloads_dir.exists()


def test_an_unanswered_offer_times_out_on_both_sides(pair: Pair, tmp_path: Path) -> None:
    """Nobody accepts: after the offer timeout both sides report file_failed 'timeout'."""
    alice, bob = pair(offer_timeout_s=1.0)
    t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 1000))
    bob.log.wait("file_offer")
    assert alice.log.wait("file_failed", timeout=5)[0]["reason"] == "timeout"
    assert bob.log.wait("file_failed", timeout=5)[0]["reason"] == "timeout"
    with pytest.raises(Exception, match="no pending offer"):
        bob.files.accept()
    assert alice.files.get(t.id).state.value == "failed"  # type: ignore[union-attr]


def test_pending_offers_are_limited_per_peer(pair: Pair, tmp_path: Path) -> None:
    """More than MAX_PENDING_OFFERS unanswered offers: the extra one is declined."""
    alice, bob = pair()
    src = random_file(tmp_path / "x.bin", 10)
    ids = [alice.files.offer("bob", src).id for _ in range(p.MAX_PENDING_OFFERS + 1)]
    bob.log.wait("file_offer", count=p.MAX_PENDING_OFFERS)
    failed = alice.log.wait("file_failed")[0]
    assert failed["transfer"] == ids[-1] and failed["detail"] == "too many pending offers"


def test_autoaccept_is_only_for_named_peers_and_persists(pair: Pair, tmp_path: Path) -> None:
    """/autoaccept alice: her next file arrives without asking; the list survives a restart."""
    alice, bob = pair()
    bob.files.set_autoaccept("alice", True)
    src = random_file(tmp_path / "auto.bin", 5000)
    alice.files.offer("bob", src)
    done = bob.log.wait("file_done")[0]
    assert sha(Path(done["path"])) == sha(src)
    assert alice.node.node_id in bob.files.records.autoaccept()  # type: ignore[union-attr]


def test_the_config_files_auto_accept_list_needs_no_command(tmp_path: Path) -> None:
    """Bob's config names alice's id under auto_accept: her file arrives without asking."""
    alice_id = Identity.load_or_create(tmp_path / "alice").node_id
    bob = Peer(tmp_path / "bob", "bob", [], settings={"auto_accept": [alice_id]})
    alice = Peer(tmp_path / "alice", "alice", [f"127.0.0.1:{bob.node.port}"])
    try:
        alice.log.wait("peer_joined")
        bob.log.wait("peer_joined")
        src = random_file(tmp_path / "auto.bin", 5000)
        alice.files.offer("bob", src)
        done = bob.log.wait("file_done")[0]
        assert sha(Path(done["path"])) == sha(src)
    finally:
        alice.close()
        bob.close()


def test_commands_offer_list_accept_and_cancel(pair: Pair, tmp_path: Path) -> None:
    """The slash commands, registered as a plugin, drive the same flow."""
    alice, bob = pair()
    plugins = Plugins(entry_points=False, extra=[transfer_commands])
    registry = build_registry(plugins)
    actx, bctx = Context(alice.node, registry, plugins), Context(bob.node, registry, plugins)
    src = random_file(tmp_path / "my file.bin", 2000)
    out = execute(actx, f"/file bob {src}")
    assert out is not None and "offered my file.bin" in out.text
    bob.log.wait("file_offer")
    listing = execute(bctx, "/transfers")
    assert listing is not None and "offered" in listing.text and "<- alice" in listing.text
    accepted = execute(bctx, "/accept 1")
    assert accepted is not None and "accepted my file.bin" in accepted.text
    bob.log.wait("file_done")
    t2 = execute(actx, f"/file bob '{src}'")
    assert t2 is not None
    bob.log.wait("file_offer", count=2)
    execute(actx, f"/cancel {t2.data['transfer']}")
    assert bob.log.wait("file_failed")[0]["reason"] == "cancelled by peer"
    auto = execute(bctx, "/autoaccept alice")
    assert auto is not None and auto.data["autoaccept"] is True


def _hex(alg: str, data: bytes) -> str:
    h = new_hasher(alg)
    h.update(data)
    return h.hexdigest()


class _Liar(FileStreamer):
    """A sender that misbehaves in one chosen way."""

    mode = ""
    gate: threading.Event | None = None

    def stream_file(self, path: str, size: int, offset: int, hasher: Any,
                    progress: Callable[[int], None]) -> str:
        if self.gate is not None:
            self.gate.wait(10)
        data = Path(path).read_bytes()[offset:]
        if self.mode == "short":
            self.sock.sendall(data[:-100])
            raise OSError("hung up early")
        if self.mode == "short_then_trailer":
            self.sock.sendall(data[:-1000])
            return _hex(self.alg, data)  # the trailer is read as file bytes
        if self.mode == "long":
            self.sock.sendall(data + b"x" * 5000)
            return _hex(self.alg, data)
        if self.mode == "hash":
            self.sock.sendall(data)
            return "0" * 64
        if self.mode == "stall":
            self.sock.sendall(data[: len(data) // 2])
            threading.Event().wait(3)
            raise OSError("gave up")
        return super().stream_file(path, size, offset, hasher, progress)


@pytest.mark.parametrize("mode, reason", [
    ("short", "closed the connection after"),
    ("short_then_trailer", "stalled|closed the connection after"),
    ("long", "sent more than the offered"),
    ("hash", "BLAKE3 mismatch"),
    ("stall", "stalled"),
])
def test_a_lying_or_stalling_sender_leaves_no_corrupt_file(
        pair: Pair, tmp_path: Path, mode: str, reason: str) -> None:
    """Fewer or more bytes than offered, a wrong hash, a stall: file_failed with a clear
    reason, no final file, a bad .part deleted, and the chat still works."""
    alice, bob = pair(stall_s=1.0)
    liar = type("Liar", (_Liar,), {"mode": mode})
    alice.files.server.streamer = liar  # type: ignore[union-attr]
    src = random_file(tmp_path / "doc.bin", 256 * 1024)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    failed = bob.log.wait("file_failed", timeout=10)[0]
    assert re.search(reason, failed["reason"]), failed["reason"]
    dl = bob.node.config.downloads_dir
    assert not (dl / "doc.bin").exists()
    if mode in ("long", "hash"):
        assert not failed["resumable"] and not list(dl.glob("*.part"))
    assert_chat_works(alice, bob)


def test_data_without_an_accepted_offer_is_dropped_and_counted(
        pair: Pair, tmp_path: Path) -> None:
    """A data request for a transfer never offered, or offered to someone else, is refused."""
    alice, bob = pair()
    carol = Peer(tmp_path / "carol", "carol", [])
    try:
        t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 1000))
        bob.log.wait("file_offer")
        for thief, transfer in ((bob, "0123456789"), (carol, t.id)):
            job = RecvJob(transfer, alice.node.node_id, "127.0.0.1", alice.files.port, 1,
                          str(tmp_path / "steal"), (RecvItem("x.bin", 1000, ("x.bin",)),), 0,
                          None, 1000)
            sink = ReceiveSink(strict=True)
            (tmp_path / "steal").mkdir(exist_ok=True)
            Receiver(job, thief.node.identity, "thief", sink).run()
            errors = sink.errors
            assert errors and "no such transfer offered to you" in errors[0].reason
        assert alice.files.stats()["counters"]["data_refused"] == 2
        assert list((tmp_path / "steal").glob("*")) == []
        assert_chat_works(alice, bob)
    finally:
        carol.close()


def test_not_enough_space_is_refused_at_accept(pair: Pair, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Free space is checked before accepting."""
    alice, bob = pair()
    t = alice.files.offer("bob", random_file(tmp_path / "x.bin", 1000))
    bob.log.wait("file_offer")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 10))  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="not enough space"):
        bob.files.accept(t.id)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only); skipped where mounting is impossible."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        skip_unless_required(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_mid_file_keeps_the_part_and_resumes_later(
        pair: Pair, tmp_path: Path, small_disk: Path) -> None:
    """The disk fills while bytes arrive: file_failed 'disk full', the .part stays, the chat
    works; after space is freed, /accept again resumes and the file verifies."""
    alice, bob = pair()
    gate = threading.Event()
    alice.files.server.streamer = type("Gated", (_Liar,), {"gate": gate})  # type: ignore[union-attr]
    src = random_file(tmp_path / "big.bin", 1536 * 1024)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id, small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024))
    gate.set()
    failed = bob.log.wait("file_failed", timeout=10)[0]
    assert "disk full" in failed["reason"] and failed["resumable"]
    parts = list(small_disk.glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size > 0
    assert not (small_disk / "big.bin").exists()
    assert_chat_works(alice, bob)
    filler.unlink()
    bob.files.accept(t.id)
    done = bob.log.wait("file_done", timeout=10)[0]
    assert sha(Path(done["path"])) == sha(src)


def test_receiver_restart_resumes_from_the_part(pair: Pair, tmp_path: Path) -> None:
    """Bob closes mid-file and starts again on the same home: the rest arrives, verified,
    and the first progress after the restart starts above zero."""
    alice, bob = pair()
    gate = threading.Event()

    class Slow(FileStreamer):
        def stream_file(self, path: str, size: int, offset: int, hasher: Any,
                        progress: Callable[[int], None]) -> str:
            if offset == 0:  # first attempt: half the file, then hang until bob leaves
                with open(path, "rb") as fh:
                    self.sock.sendall(fh.read(size // 2))
                gate.wait(10)
                raise OSError("receiver went away")
            return super().stream_file(path, size, offset, hasher, progress)

    alice.files.server.streamer = Slow  # type: ignore[union-attr]
    src = random_file(tmp_path / "big.bin", 4 * MiB)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    part = bob.node.config.downloads_dir / "big.bin.part"
    for _ in range(500):  # the receiver writes the first half to disk
        if part.exists() and part.stat().st_size >= 2 * MiB:
            break
        gate.wait(0.02)
    assert part.stat().st_size >= 2 * MiB
    home = bob.node.config.home
    bob.close()
    gate.set()
    bob2 = Peer(home, "bob", [])
    try:
        # alice's dialer finds bob at his old port only if it is the same; tell alice anew
        bob2.node.send_control(alice.node.node_id, p.FileAnswer(t.id, True, (0, 0), "resume"))
        done = bob2.log.wait("file_done", timeout=15)[0]
        assert sha(Path(done["path"])) == sha(src)
        first = bob2.log.named("file_progress")[0]
        assert first["done"] >= 1 * MiB, "bytes already received were not sent again"
    finally:
        bob2.close()


def test_the_sender_keeps_the_digest_it_computed(pair: Pair, tmp_path: Path) -> None:
    """The file is hashed once; the record keeps that digest with the algorithm and the
    file's (dev, inode, size, mtime) so a later confirm need not read the file again."""
    alice, bob = pair()
    src = random_file(tmp_path / "once.bin", 2 * MiB + 5)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    bob.files.accept(t.id)
    alice.log.wait("file_done", lambda e: e["transfer"] == t.id)
    item = alice.files.get(t.id).items[0]  # type: ignore[union-attr]
    st = src.stat()
    assert item.sha256 == digest(src)
    assert item.stamp == f"blake3:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    job = SendJob(t.id, bob.node.node_id, 1, ((str(src), st.st_size),), ("once.bin",),
                  st.st_size, ((item.stamp, item.sha256),))
    streamer = FileStreamer(None, job, alice.files)  # type: ignore[arg-type]
    streamer.alg = "blake3"
    assert streamer._ahead(0) == digest(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert streamer._ahead(0) is None, "a changed file is hashed again"


def test_the_file_server_accepts_past_descriptor_1024(pair: Pair, tmp_path: Path) -> None:
    """With more than 1024 descriptors open, the data listener still takes connections
    (select() cannot watch a descriptor past 1024; the accept loop uses selectors)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1300
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the descriptor limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        alice, bob = pair()
        server = alice.files.server
        assert server is not None and min(s.fileno() for s in server._socks) > 1024
        src = random_file(tmp_path / "late.bin", 64 * 1024)
        t = alice.files.offer("bob", src)
        bob.log.wait("file_offer")
        bob.files.accept()
        got = bob.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
        assert sha(Path(got["path"])) == sha(src)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
