"""Transfer records: what a node knows about each offer, kept as JSON files in the home.

Each record is one file `<home>/transfers/t-<id>.json` (the prefix keeps a peer-chosen id
away from `autoaccept.json`; older `<id>.json` files are still read and renamed), written
atomically (temporary file, fsync, rename), so a node killed at any moment restarts knowing
its offers and accepted transfers; the bytes already received are the `.part` files
themselves. Offers we never accepted are not written at all (a peer cannot fill the disk
by offering and cancelling).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lanchat.home import write_atomic
from lanchat.protocol import SHA256

log = logging.getLogger(__name__)

RECORDS_DIR = "transfers"
AUTOACCEPT_FILE = "autoaccept.json"
RECORD_PREFIX = "t-"
KEEP_FINISHED_S = 7 * 24 * 3600.0


class TransferError(Exception):
    """A transfer request cannot be done; the message says what to do instead."""


class State(enum.Enum):
    """Life of one transfer, on either side."""

    OFFERED = "offered"  # out: waiting for an answer; in: waiting for /accept
    ACCEPTED = "accepted"  # bytes move, or will again after an interruption
    DONE = "done"
    FAILED = "failed"
    DECLINED = "declined"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True once nothing more will happen."""
        return self not in (State.OFFERED, State.ACCEPTED)


@dataclass(frozen=True)
class Item:
    """One file of a transfer: the peer's relative path, size, and where it goes here."""

    path: str
    size: int
    dest: tuple[str, ...] = ()  # in: components below the download folder
    final: str = ""  # in: the name it got when published
    sha256: str = ""  # in: verified digest once complete; out: digest of the file at `stamp`
    stamp: str = ""  # out: "alg:dev:inode:size:mtime_ns" of the source when it was hashed


@dataclass(frozen=True)
class Transfer:
    """One offer, incoming or outgoing."""

    id: str
    direction: str  # "in" or "out"
    peer: str
    peer_nick: str
    name: str
    size: int
    items: tuple[Item, ...]
    folder: bool = False
    sha256: str | None = None  # what the offer claimed
    state: State = State.OFFERED
    created: float = field(default_factory=time.time)
    source: str = ""  # out: the file or folder sent
    dest_dir: str = ""  # in: the download folder chosen at accept
    index: int = 0  # first file not yet complete
    reason: str = ""
    result: str = ""  # verified digest (a file) or tree digest (a folder)
    path: str = ""  # in: the published file or folder
    hash: str = SHA256  # in: the digest this transfer is verified with (chosen at the offer)

    def with_(self, **changes: Any) -> Transfer:
        """A copy with fields changed."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON form for the record file."""
        d = asdict(self)
        d["state"] = self.state.value
        d["items"] = [dict(asdict(i), dest=list(i.dest)) for i in self.items]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Transfer:
        """Read a record file's JSON (raises KeyError/ValueError/TypeError when malformed)."""
        items = tuple(Item(str(i["path"]), int(i["size"]), tuple(str(p) for p in i["dest"]),
                           str(i["final"]), str(i["sha256"]), str(i.get("stamp", "")))
                      for i in d["items"])
        fields = dict(d, items=items, state=State(d["state"]))
        return cls(**fields)


def digest_fields(alg: str, digest: str | None) -> dict[str, Any]:
    """The `file_done` fields that name the digest: `sha256` (null unless SHA-256 was used:
    the contract's field, never a digest of another kind), `hash`, `digest`."""
    return {"sha256": digest if alg == SHA256 else None, "hash": alg, "digest": digest}


class RecordStore:
    """Transfer records and the auto-accept list under `<home>/transfers/`."""

    def __init__(self, home: Path) -> None:
        self.dir = home / RECORDS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, transfer_id: str) -> Path:
        """Where the record of one transfer lives."""
        return self.dir / f"{RECORD_PREFIX}{transfer_id}.json"

    def log_path(self, transfer_id: str) -> Path:
        """Files received since the record was last written, one JSON line each."""
        return self.dir / f"{RECORD_PREFIX}{transfer_id}.log"

    def save(self, transfer: Transfer) -> None:
        """Persist one record (it holds everything its progress log held)."""
        data = json.dumps(transfer.to_json(), ensure_ascii=False).encode()
        write_atomic(self.path(transfer.id), data)
        self.log_path(transfer.id).unlink(missing_ok=True)

    def log_file(self, transfer: Transfer, index: int) -> None:
        """Note that file `index` is published: one short line, not a whole record (a
        folder of many files would otherwise cost O(files^2)); no fsync, a killed process
        loses nothing, and the record itself is rewritten now and then."""
        item = transfer.items[index]
        line = json.dumps({"index": index, "final": item.final, "sha256": item.sha256},
                          ensure_ascii=False) + "\n"
        with open(self.log_path(transfer.id), "a", encoding="utf-8") as fh:
            fh.write(line)

    def delete(self, transfer_id: str) -> None:
        """Forget one record (missing is fine)."""
        self.path(transfer_id).unlink(missing_ok=True)
        self.log_path(transfer_id).unlink(missing_ok=True)

    def _replay(self, t: Transfer) -> Transfer:
        """Apply the progress log written after the record."""
        try:
            lines = self.log_path(t.id).read_text(encoding="utf-8").splitlines()
        except OSError:
            return t
        items, index, path = list(t.items), t.index, t.path
        for line in lines:
            try:
                d = json.loads(line)
                i, final, sha = int(d["index"]), str(d["final"]), str(d["sha256"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            if not 0 <= i < len(items) or not items[i].dest:
                continue
            items[i] = replace(items[i], final=final, sha256=sha)
            index = max(index, i + 1)
            if not t.folder:
                path = os.path.join(t.dest_dir, *items[i].dest[:-1], final)
        return t.with_(items=tuple(items), index=index, path=path)

    def load(self, now: float) -> list[Transfer]:
        """Every readable record; finished ones older than a week are removed."""
        out = []
        for path in sorted(self.dir.glob("*.json")):  # not the .log files
            if path.name == AUTOACCEPT_FILE:
                continue
            try:
                transfer = Transfer.from_json(json.loads(path.read_bytes()))
            except (OSError, KeyError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable transfer record %s: %s", path, exc)
                continue
            if transfer.state.finished and now - transfer.created > KEEP_FINISHED_S:
                path.unlink(missing_ok=True)
                continue
            transfer = self._replay(transfer)
            if path != self.path(transfer.id):  # an old-style `<id>.json`: rename it
                try:
                    self.save(transfer)
                    path.unlink()
                except OSError as exc:
                    log.warning("cannot rename transfer record %s: %s", path, exc)
            out.append(transfer)
        return sorted(out, key=lambda t: t.created)

    def autoaccept(self) -> set[str]:
        """Peer ids whose offers are accepted without asking."""
        try:
            value = json.loads((self.dir / AUTOACCEPT_FILE).read_bytes())
        except (OSError, ValueError):
            return set()
        return {str(v) for v in value} if isinstance(value, list) else set()

    def set_autoaccept(self, ids: set[str]) -> None:
        """Persist the auto-accept list."""
        write_atomic(self.dir / AUTOACCEPT_FILE, json.dumps(sorted(ids)).encode())
