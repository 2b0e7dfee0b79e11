"""The transfer extension: offers, answers, resume, timeouts, and the events people see.

Threads: the node's loop only queues control messages here (`on_message`); a control
thread handles them and does the record file I/O; each data stream has its own thread and
connection (see stream.py). State is guarded by one lock and persisted in the home.

The parts: core.py (state, shared helpers), offers.py (control messages from peers),
receiving.py and sending.py (the two sides of a stream), plan.py (folders and names);
this module has the lifecycle, the control thread and the public API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanchat.api import NodeHost, PeerSession
from lanchat.events import Event
from lanchat.protocol import (
    FileAnswer,
    FileCancel,
    FileEntry,
    FileOffer,
    Message,
    encode,
)
from lanchat.transfer.core import (
    OFFER_TIMEOUT_S,
    STOP_JOIN_S,
    TICK_S,
    TRANSFER_ID_BYTES,
    TransferError,
)
from lanchat.transfer.offers import OfferControl
from lanchat.transfer.plan import human_size, plan, walk
from lanchat.transfer.receiving import ReceivingSide
from lanchat.transfer.records import Item, RecordStore, State, Transfer
from lanchat.transfer.sending import SendingSide
from lanchat.transfer.stream import (
    STALL_S,
    DataServer,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from lanchat.node import Node

__all__ = ["OFFER_TIMEOUT_S", "TransferError", "TransferManager", "attach"]


class TransferManager(OfferControl, ReceivingSide, SendingSide):
    """Node extension for file transfer; public methods are thread-safe."""

    # -- extension interface (loop thread) -------------------------------------------

    async def start(self, node: NodeHost) -> None:
        """Load records, open the data listener and the control thread (off the loop)."""
        self.node = node
        await asyncio.get_running_loop().run_in_executor(None, self._start)

    async def stop(self) -> None:
        """Stop the listener, the control thread and every stream."""
        await asyncio.get_running_loop().run_in_executor(None, self._stop)

    def on_message(self, session: PeerSession, message: Message) -> bool:
        """Queue file control messages for the control thread."""
        if not isinstance(message, FileOffer | FileAnswer | FileCancel):
            return False
        self._queue.put(("message", (session.peer_id, session.peer_nick, session.address,
                                     message)))
        return True

    def set_nick(self, nick: str) -> None:
        """Nothing to do: the data connection asks `node.nick` when it needs it."""

    def stats(self) -> dict[str, Any]:
        """Counters and transfer counts by state."""
        with self._lock:
            states: dict[str, int] = {}
            for t in self._transfers.values():
                states[t.state.value] = states.get(t.state.value, 0) + 1
            server = dict(self.server.counters) if self.server is not None else {}
            return {"counters": {**self.counters, **server}, "states": states,
                    "active": len(self._active), "port": self.port}
    def on_event(self, event: Event) -> None:
        """Node events (event thread): re-offer unfinished transfers when a peer connects."""
        if event.name in ("peer_joined", "peer_updated"):
            peer = event["peer"]
            with self._lock:
                new = bool(peer.get("connected")) and peer["id"] not in self._connected
                if new:
                    self._connected.add(peer["id"])
            if new:
                self._queue.put(("connected", peer["id"]))
        elif event.name == "peer_left":
            with self._lock:
                self._connected.discard(event["peer"]["id"])

    # -- lifecycle (executor) -------------------------------------------------------

    def _start(self) -> None:
        node = self.node
        self.records = RecordStore(node.config.home)
        self._autoaccept = self.records.autoaccept() | set(node.config.auto_accept)
        now, mono = time.time(), time.monotonic()
        for t in self.records.load(now):
            self._remember(t)
            if t.state is State.OFFERED:
                left = max(0.0, t.created + self.offer_timeout_s - now)
                with self._lock:
                    self._deadlines[t.id] = mono + left
        self.server = DataServer(node.identity, lambda: str(node.nick),
                                 list(node.config.interfaces), self, stall_s=self.stall_s)
        self.server.start()
        self._thread = threading.Thread(target=self._control_loop, name="lanchat-files",
                                        daemon=True)
        self._thread.start()
        with self._lock:
            unfinished = [t for t in self._transfers.values() if not t.state.finished]
        for t in unfinished:
            if t.direction == "out":
                self._send_offer(t)
            elif t.state is State.ACCEPTED:
                node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))

    def _stop(self) -> None:
        deadline = time.monotonic() + STOP_JOIN_S
        with self._lock:
            self._active.clear()
            receivers = list(self._receivers)
            self._receivers.clear()
        self._queue.put(None)
        for receiver in receivers:  # a stream blocked in recv ends now, not at its stall
            receiver.stop()
        if self.server is not None:
            self.server.stop()
        self.prehasher.close()
        for receiver in receivers:
            if receiver.thread is not None:
                receiver.thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            dirty = list(self._dirty)
        for tid in dirty:
            self._flush(tid)

    # -- control thread -------------------------------------------------------------

    def _control_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=TICK_S)
            except queue.Empty:
                item = ("tick", None)
            if item is None:
                return
            kind, arg = item
            try:
                if kind == "message":
                    self._handle(*arg)
                elif kind == "connected":
                    self._peer_connected(arg)
                elif kind == "call":
                    arg()
                self._expire(time.monotonic())
            except Exception:  # noqa: BLE001 - the control thread never dies
                log.exception("file control failed on %s", kind)

    # -- public API (any thread but the loop) ----------------------------------------

    def offer(self, peer_ref: str, path: Path) -> Transfer:
        """Offer a file or folder to a peer; return the new transfer."""
        try:
            peer = self.node.resolve(peer_ref)
        except LookupError as exc:
            raise TransferError(str(exc).strip("'\"")) from None
        path = path.expanduser()
        try:
            source = path.resolve(strict=True)
        except OSError:
            raise TransferError(f"no such file or folder: {path}") from None
        if source.is_dir():
            items = walk(source)
            name, folder = source.name or "folder", True
        elif source.is_file():
            items = (Item(source.name, source.stat().st_size),)
            name, folder = source.name, False
        else:
            raise TransferError(f"{path} is not a regular file or folder")
        tid = secrets.token_hex(TRANSFER_ID_BYTES)
        t = Transfer(tid, "out", peer["id"], peer["nick"], name, sum(i.size for i in items),
                     items, folder=folder, source=str(source))
        files = tuple(FileEntry(i.path, i.size) for i in items) if folder else ()
        try:
            encode(FileOffer(tid, name, t.size, None, files, self.port))
        except ValueError:
            raise TransferError(f"{path} has too many files for one offer; "
                                "send it as an archive") from None
        self._save(t)
        with self._lock:
            self._deadlines[tid] = time.monotonic() + self.offer_timeout_s
        self._send_offer(t)
        self._count("offers_out")
        return t

    def accept(self, ref: str | None = None, dest: Path | None = None) -> Transfer:
        """Accept an offer (default: the latest pending) into `dest` or the downloads."""
        return self._accept(self.find(ref, direction="in",
                                      states=(State.OFFERED, State.ACCEPTED)), dest)

    def _accept(self, t: Transfer, dest: Path | None = None) -> Transfer:
        if t.state is State.ACCEPTED:
            with self._lock:
                busy = t.id in self._active
            if busy:
                raise TransferError(f"transfer {t.id} is already moving")
            self._resume(t)
            return t
        root = (dest or self.node.config.downloads_dir).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
            root_s = os.path.realpath(root)
            free = shutil.disk_usage(root_s).free
        except OSError as exc:
            raise TransferError(f"cannot use {root}: {exc.strerror or exc}") from None
        free -= self._promised(root_s, t.id)
        if free < t.size:
            raise TransferError(f"not enough space in {root}: {human_size(t.size)} needed, "
                                f"{human_size(max(0, free))} free for it")
        try:
            items = plan(t, root_s)
        except OSError as exc:
            raise TransferError(f"cannot prepare {root}: {exc.strerror or exc}") from None
        with self._lock:
            self._deadlines.pop(t.id, None)
            known = t.id in self._senders
        t = self._save(t.with_(state=State.ACCEPTED, dest_dir=root_s, items=items,
                               path=os.path.join(root_s, items[0].dest[0])))
        # no data port known (an offer from before a restart): "resume" asks for it again
        self.node.send_control(t.peer, FileAnswer(t.id, True, (0, 0),
                                                  "" if known else "resume"))
        self._start_receiver(t)
        return t

    def _promised(self, root: str, skip: str) -> int:
        """Bytes other accepted transfers still have to write on the disk of `root`."""
        with self._lock:
            others = [t for t in self._transfers.values() if t.direction == "in"
                      and t.state is State.ACCEPTED and t.id != skip]
        try:
            dev = os.stat(root).st_dev
        except OSError:
            return 0
        total = 0
        for t in others:
            try:
                same = os.stat(t.dest_dir).st_dev == dev
            except OSError:
                continue
            if same:
                total += sum(i.size for i in t.items[t.index:])
        return total

    def decline(self, ref: str | None, reason: str = "") -> Transfer:
        """Decline a pending offer."""
        return self._decline(self.find(ref, direction="in", states=(State.OFFERED,)), reason)

    def _decline(self, t: Transfer, reason: str = "") -> Transfer:
        self.node.send_control(t.peer, FileAnswer(t.id, False, reason=reason[:200]))
        self._finish(t, State.DECLINED, "declined", detail=reason)
        return t

    def cancel(self, ref: str) -> Transfer:
        """Stop an unfinished transfer, either direction, and tell the peer."""
        t = self.find(ref, states=(State.OFFERED, State.ACCEPTED))
        self.node.send_control(t.peer, FileCancel(t.id, "cancelled"))
        self._finish(t, State.CANCELLED, "cancelled")
        self._queue.put(("call", lambda: self._delete_parts(t)))
        return t

    def set_autoaccept(self, peer_ref: str, on: bool) -> dict[str, Any]:
        """Accept (or stop accepting) this peer's offers without asking; persisted."""
        try:
            peer = self.node.resolve(peer_ref)
        except LookupError as exc:
            raise TransferError(str(exc).strip("'\"")) from None
        with self._lock:
            (self._autoaccept.add if on else self._autoaccept.discard)(peer["id"])
            ids = set(self._autoaccept)
        assert self.records is not None
        self.records.set_autoaccept(ids)
        return dict(peer)

    def autoaccept_peers(self) -> set[str]:
        """Peer ids whose offers are accepted without asking."""
        with self._lock:
            return set(self._autoaccept)

    def transfers(self) -> list[dict[str, Any]]:
        """Every known transfer, oldest first, as plain dicts."""
        with self._lock:
            out = []
            for t in sorted(self._transfers.values(), key=lambda x: x.created):
                d = {"number": self._numbers[t.id], "transfer": t.id,
                     "direction": t.direction, "peer": t.peer, "nick": t.peer_nick,
                     "name": t.name, "size": t.size, "state": t.state.value,
                     "reason": t.reason, "moving": t.id in self._active,
                     "path": t.path or t.source,
                     **self.done_fields(t.hash, t.result or None)}
                out.append(d)
            return out

    def find(self, ref: str | None, *, direction: str | None = None,
             states: tuple[State, ...] = ()) -> Transfer:
        """A transfer by list number or id prefix; with no ref, the latest that fits."""
        with self._lock:
            pool = [t for t in self._transfers.values()
                    if (direction is None or t.direction == direction)
                    and (not states or t.state in states)]
            if ref is None:
                if not pool:
                    raise TransferError("no pending offer; /transfers lists them")
                return max(pool, key=lambda t: (t.created, self._numbers[t.id]))
            ref = ref.strip().lower()
            if ref.isdigit():
                hits = [t for t in pool if self._numbers[t.id] == int(ref)]
                if hits:
                    return hits[0]
            hits = [t for t in pool if t.id.lower().startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise TransferError(f"no such transfer {ref!r} here; /transfers lists them")
        raise TransferError(f"{ref!r} matches {len(hits)} transfers; type more of the id")


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
