"""File digests: BLAKE3 between lanchat peers, SHA-256 for a peer that names only it, and
each file hashed at most once per side (the sender's ahead of time, while bob decides)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanchat.transfer import hashing, sender
from lanchat.transfer.hashing import Partial, Prehasher, new_hasher
from lanchat.transfer.stream import FileStreamer, SendJob
from nodes import wait_until
from transfer_peers import MiB, Peer, digest, open_pair, random_file, sha


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Any]:
    """`peers(alice_options, bob_options)`: bob listens, alice names him."""
    made: list[Peer] = []
    yield lambda alice, bob: open_pair(tmp_path, made, alice, bob)
    for peer in reversed(made):
        peer.close()


def test_a_receiver_that_names_only_sha256_gets_sha256_end_to_end(peers: Any,
                                                                   tmp_path: Path) -> None:
    """Bob asks for SHA-256 (as a peer from before BLAKE3 does): the sender answers in it,
    and both events carry the SHA-256 in `sha256`, as the headless contract promises."""
    alice, bob = peers({}, {"hashes": ("sha256",)})
    src = random_file(tmp_path / "old.bin", MiB + 3)
    t = alice.files.offer("bob", src)
    offer = bob.log.wait("file_offer")[0]
    assert offer["hash"] == "sha256"
    bob.files.accept(t.id)
    got = bob.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    out = alice.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    assert got["hash"] == out["hash"] == "sha256"
    assert got["sha256"] == out["sha256"] == got["digest"] == sha(src)


def test_the_sender_hashes_while_bob_decides_and_not_again_while_sending(
        peers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's digest is ready before bob accepts; the stream then sends without hashing."""
    alice, bob = peers({}, {})
    src = random_file(tmp_path / "ahead.bin", 3 * MiB + 1)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer")
    wait_until(lambda: alice.files.prehasher.known(str(src), "blake3") is not None,
               "the file hashed ahead")
    assert alice.files.prehasher.known(str(src), "blake3") == digest(src)

    def no_hashing(alg: str) -> hashing.Hasher:
        raise AssertionError("the sender hashed the file a second time")

    monkeypatch.setattr(sender, "new_hasher", no_hashing)
    monkeypatch.setattr(sender, "hash_prefix", no_hashing)
    bob.files.accept(t.id)
    got = bob.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    out = alice.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    assert got["digest"] == out["digest"] == digest(src)


def test_a_stream_takes_over_a_digest_part_way_and_hashes_only_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for a file the Prehasher is reading, take() stops it after the block it is in
    and hands over the hasher; the stream hashes only the bytes past it."""
    src = random_file(tmp_path / "big.bin", 5 * MiB + 7)
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def __init__(self) -> None:
            self.h = new_hasher("blake3")
            self.fed = 0

        def update(self, data: Any) -> None:
            entered.set()
            release.wait(10)
            self.h.update(data)
            self.fed += len(data)

        def hexdigest(self) -> str:
            return self.h.hexdigest()

    monkeypatch.setattr(hashing, "new_hasher", lambda alg: Slow())
    pre = Prehasher()
    try:
        pre.submit([str(src)], "blake3")
        assert entered.wait(10)
        taken: list[object] = []
        taker = threading.Thread(target=lambda: taken.append(pre.take(str(src), "blake3")))
        taker.start()
        wait_until(lambda: pre._current is not None and pre._current.stop, "the hash stopped")
        release.set()  # the block in progress ends; the worker sees the stop and hands over
        taker.join(10)
    finally:
        pre.close()
    partial = taken[0]
    assert isinstance(partial, Partial) and 0 < partial.pos < src.stat().st_size
    assert partial.hasher.fed == partial.pos  # type: ignore[attr-defined]

    sent = bytearray()

    class Sink:
        def sendall(self, data: Any) -> None:
            sent.extend(data)

    class Owner:
        def wanted(self, *a: Any) -> bool:
            return True

    size = src.stat().st_size
    job = SendJob("t1", "peer", 1, ((str(src), size),), ("big.bin",), size)
    streamer = FileStreamer(Sink(), job, Owner())  # type: ignore[arg-type]
    streamer.alg = "blake3"
    result = streamer.stream_file(str(src), size, 0, partial, lambda n: None)
    assert bytes(sent) == src.read_bytes()
    assert partial.hasher.fed == size, "every byte hashed exactly once"  # type: ignore[attr-defined]
    assert result == digest(src)
