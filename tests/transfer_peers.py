"""In-process file-transfer peers for tests: a started node with its transfer manager."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanchat.config import Config
from lanchat.node import Node
from lanchat.transfer import TransferManager, attach
from lanchat.transfer.hashing import new_hasher
from nodes import EventLog

MiB = 1 << 20


class Peer:
    """One started node on 127.0.0.1 (no discovery) with its event log and transfers."""

    def __init__(self, home: Path, nick: str, peers: list[str],
                 settings: dict[str, Any] | None = None, **options: Any) -> None:
        config = Config(home=home, nick=nick, port=0, interfaces=["127.0.0.1"], peers=peers,
                        mdns=False, beacon=False, **(settings or {}))
        self.node = Node(config)
        self.log = EventLog()
        self.node.subscribe(self.log)
        self.files: TransferManager = attach(self.node, **options)
        self.node.start()

    def close(self) -> None:
        self.node.close()


Pair = Callable[..., tuple[Peer, Peer]]


def open_pair(home: Path, made: list[Peer], alice: dict[str, Any],
              bob: dict[str, Any]) -> tuple[Peer, Peer]:
    """Bob listens, alice names him (each with its own transfer options); both see each
    other. Started peers are appended to `made`, for the caller to close."""
    b = Peer(home / "bob", "bob", [], **bob)
    made.append(b)
    a = Peer(home / "alice", "alice", [f"127.0.0.1:{b.node.port}"], **alice)
    made.append(a)
    a.log.wait("peer_joined")
    b.log.wait("peer_joined")
    return a, b


def sha(path: Path) -> str:
    """SHA-256 of a file, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest(path: Path, alg: str = "blake3") -> str:
    """A file's digest by `alg` (what two lanchat peers agree on: BLAKE3), hex."""
    h = new_hasher(alg)
    h.update(path.read_bytes())
    return h.hexdigest()


def random_file(path: Path, size: int) -> Path:
    """A file of random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


class ReceiveSink:
    """A receive owner for a bare Receiver: records failures; with `strict`, any file that
    arrives fails the test."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.errors: list[Any] = []

    def wanted(self, transfer: str, generation: int) -> bool:
        return True

    def progress(self, job: Any, done: int) -> None:
        pass

    def file_complete(self, *a: Any) -> None:
        assert not self.strict, "nothing may arrive"

    def received(self, *a: Any) -> None:
        assert not self.strict, "nothing may arrive"

    def receive_failed(self, job: Any, error: Any) -> None:
        self.errors.append(error)
