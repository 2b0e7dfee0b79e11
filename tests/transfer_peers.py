"""In-process file-transfer peers for tests: a started node with its transfer manager."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nodes
from lanchat.transfer import TransferManager, attach
from lanchat.transfer.hashing import new_hasher

MiB = 1 << 20


class Peer(nodes.Peer):
    """One started node on 127.0.0.1 (no discovery, tests/nodes.py) with its transfers:
    `settings` are config keywords, `options` go to the transfer manager."""

    def __init__(self, home: Path, nick: str, peers: Sequence[str] = (),
                 settings: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(home, nick, peers=peers, **(settings or {}),
                         extensions={"files": lambda node: attach(node, **options)})
        self.files: TransferManager = self.ext["files"]


Pair = Callable[..., tuple[Peer, Peer]]


def open_pair(home: Path, made: list[Peer], alice: dict[str, Any],
              bob: dict[str, Any]) -> tuple[Peer, Peer]:
    """The two-node fixture's pair (tests/nodes.py `Peers.pair`) with transfers, each with
    its own transfer options. Started peers are appended to `made`, for the caller to close."""
    group = nodes.Peers(home, Peer)
    try:
        a, b = group.pair(alice, bob)
    finally:
        made += group.made  # type: ignore[arg-type]
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
