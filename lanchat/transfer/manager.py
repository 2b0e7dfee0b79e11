"""The transfer extension: offers, answers, resume, timeouts, and the events people see.

Threads: the node's loop only queues control messages here (`on_message`); a control
thread handles them and does the record file I/O; each data stream has its own thread and
connection (see stream.py). State is guarded by one lock and persisted in the home.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanchat.events import Event
from lanchat.protocol import (
    MAX_FILES_PER_OFFER,
    MAX_PENDING_OFFERS,
    FileAnswer,
    FileCancel,
    FileEntry,
    FileOffer,
    Message,
    encode,
)
from lanchat.transfer import names
from lanchat.transfer.records import Item, RecordStore, State, Transfer
from lanchat.transfer.stream import (
    STALL_S,
    DataError,
    DataServer,
    Receiver,
    RecvItem,
    RecvJob,
    SendJob,
)

log = logging.getLogger(__name__)

OFFER_TIMEOUT_S = 300.0
TICK_S = 0.5
TRANSFER_ID_BYTES = 5
STOP_JOIN_S = 2.0


class TransferError(Exception):
    """A transfer request cannot be done; the message says what to do instead."""


class TransferManager:
    """Node extension for file transfer; public methods are thread-safe."""

    def __init__(self, *, offer_timeout_s: float = OFFER_TIMEOUT_S,
                 stall_s: float = STALL_S) -> None:
        self.offer_timeout_s = offer_timeout_s
        self.stall_s = stall_s
        self.node: Any = None
        self.records: RecordStore | None = None
        self.server: DataServer | None = None
        self.counters: dict[str, int] = {}
        self._lock = threading.RLock()
        self._transfers: dict[str, Transfer] = {}
        self._numbers: dict[str, int] = {}
        self._next_number = itertools.count(1)
        self._generations = itertools.count(1)
        self._active: dict[str, int] = {}
        self._deadlines: dict[str, float] = {}
        self._senders: dict[str, tuple[str, int]] = {}
        self._reoffered: set[str] = set()
        self._connected: set[str] = set()
        self._autoaccept: set[str] = set()
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # -- extension interface (loop thread) -------------------------------------------

    async def start(self, node: Any) -> None:
        """Load records, open the data listener and the control thread (off the loop)."""
        self.node = node
        await asyncio.get_running_loop().run_in_executor(None, self._start)

    async def stop(self) -> None:
        """Stop the listener, the control thread and every stream."""
        await asyncio.get_running_loop().run_in_executor(None, self._stop)

    def on_message(self, session: Any, message: Message) -> bool:
        """Queue file control messages for the control thread."""
        if not isinstance(message, FileOffer | FileAnswer | FileCancel):
            return False
        self._queue.put(("message", (session.peer_id, session.peer_nick, session.address,
                                     message)))
        return True

    def stats(self) -> dict[str, Any]:
        """Counters and transfer counts by state."""
        with self._lock:
            states: dict[str, int] = {}
            for t in self._transfers.values():
                states[t.state.value] = states.get(t.state.value, 0) + 1
            server = dict(self.server.counters) if self.server is not None else {}
            return {"counters": {**self.counters, **server}, "states": states,
                    "active": len(self._active), "port": self.port}

    @property
    def port(self) -> int:
        """The data listener's port."""
        return self.server.port if self.server is not None else 0

    def on_event(self, event: Event) -> None:
        """Node events (event thread): re-offer unfinished transfers when a peer connects."""
        if event.name in ("peer_joined", "peer_updated"):
            peer = event["peer"]
            if peer.get("connected") and peer["id"] not in self._connected:
                self._connected.add(peer["id"])
                self._queue.put(("connected", peer["id"]))
        elif event.name == "peer_left":
            self._connected.discard(event["peer"]["id"])

    # -- lifecycle (executor) -------------------------------------------------------

    def _start(self) -> None:
        node = self.node
        self.records = RecordStore(node.config.home)
        self._autoaccept = self.records.autoaccept()
        now, mono = time.time(), time.monotonic()
        for t in self.records.load(now):
            self._remember(t)
            if t.state is State.OFFERED:
                left = max(0.0, t.created + self.offer_timeout_s - now)
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
        with self._lock:
            self._active.clear()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
        if self.server is not None:
            self.server.stop()

    def _remember(self, t: Transfer) -> None:
        with self._lock:
            if t.id not in self._numbers:
                self._numbers[t.id] = next(self._next_number)
            self._transfers[t.id] = t

    def _save(self, t: Transfer) -> Transfer:
        """Keep and persist a new version of a record."""
        self._remember(t)
        assert self.records is not None
        try:
            self.records.save(t)
        except OSError as exc:
            self._count("record_errors")
            log.error("cannot save transfer record %s: %s", t.id, exc)
        return t

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _emit(self, event: str, /, **fields: Any) -> None:
        self.node.emit(event, **fields)

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
            if offer.port:
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
                                items, folder=bool(offer.files), sha256=offer.sha256))
        self._deadlines[t.id] = time.monotonic() + self.offer_timeout_s
        self._count("offers_in")
        self._emit("file_offer", transfer=t.id, **{"from": {"id": peer, "nick": nick}},
                   name=t.name, size=t.size, sha256=t.sha256, files=len(items),
                   folder=t.folder, number=self._numbers[t.id])
        if peer in self._autoaccept:
            try:
                self.accept(t.id)
            except TransferError as exc:
                self.decline(t.id, str(exc))

    def _repeat_offer(self, t: Transfer) -> None:
        """The sender offered again (it reconnected or restarted): resume if we accepted."""
        if t.state is State.ACCEPTED or t.state is State.DONE:
            with self._lock:
                if t.id in self._active:
                    self._reoffered.add(t.id)
                    return
            self._start_receiver(t)
        elif t.state.finished:
            self.node.send_control(t.peer, FileCancel(t.id, t.reason or t.state.value))

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
            self._deadlines.pop(t.id, None)
            self._save(t.with_(state=State.ACCEPTED))
        elif t.state is State.ACCEPTED:
            with self._lock:
                busy = t.id in self._active
            if not busy:
                self._send_offer(t)

    def _on_cancel(self, t: Transfer, cancel: FileCancel) -> None:
        if t.state.finished:
            return
        if cancel.reason == "timeout":
            self._finish(t, State.FAILED, "timeout")
        else:
            self._finish(t, State.CANCELLED, "cancelled by peer", detail=cancel.reason)
        self._delete_parts(t)

    def _peer_connected(self, peer: str) -> None:
        with self._lock:
            todo = [t for t in self._transfers.values() if t.peer == peer
                    and t.direction == "out" and not t.state.finished
                    and t.id not in self._active]
        for t in todo:
            self._send_offer(t)

    def _expire(self, now: float) -> None:
        with self._lock:
            due = [tid for tid, when in self._deadlines.items() if when <= now]
        for tid in due:
            self._deadlines.pop(tid, None)
            with self._lock:
                t = self._transfers.get(tid)
            if t is not None and t.state is State.OFFERED:
                self._finish(t, State.FAILED, "timeout")
                self.node.send_control(t.peer, FileCancel(t.id, "timeout"))

    def _finish(self, t: Transfer, state: State, reason: str, *, detail: str = "",
                resumable: bool = False) -> None:
        with self._lock:
            self._active.pop(t.id, None)
            self._deadlines.pop(t.id, None)
        self._save(t.with_(state=state, reason=reason if not detail else f"{reason}: {detail}"))
        fields: dict[str, Any] = {"transfer": t.id, "reason": reason,
                                  "direction": t.direction, "resumable": resumable}
        if detail:
            fields["detail"] = detail
        self._emit("file_failed", **fields)

    def _delete_parts(self, t: Transfer) -> None:
        if t.direction != "in" or not t.dest_dir:
            return
        for item in t.items[t.index:]:
            if not item.dest:
                continue
            try:
                with names.open_dir(t.dest_dir, item.dest[:-1], create=False) as fd:
                    os.unlink(item.dest[-1] + names.PART_SUFFIX, dir_fd=fd)
            except OSError:
                pass

    def _send_offer(self, t: Transfer) -> None:
        files = tuple(FileEntry(i.path, i.size) for i in t.items) if t.folder else ()
        self.node.send_control(t.peer, FileOffer(t.id, t.name, t.size, t.sha256, files,
                                                 self.port))

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
            items = _walk(source)
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
        self._deadlines[tid] = time.monotonic() + self.offer_timeout_s
        self._send_offer(t)
        self._count("offers_out")
        return t

    def accept(self, ref: str | None = None, dest: Path | None = None) -> Transfer:
        """Accept an offer (default: the latest pending) into `dest` or the downloads."""
        t = self.find(ref, direction="in", states=(State.OFFERED, State.ACCEPTED))
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
        if free < t.size:
            raise TransferError(f"not enough space in {root}: {_size(t.size)} needed, "
                                f"{_size(free)} free")
        try:
            items = _plan(t, root_s)
        except OSError as exc:
            raise TransferError(f"cannot prepare {root}: {exc.strerror or exc}") from None
        with self._lock:
            self._deadlines.pop(t.id, None)
        t = self._save(t.with_(state=State.ACCEPTED, dest_dir=root_s, items=items,
                               path=os.path.join(root_s, items[0].dest[0])))
        self.node.send_control(t.peer, FileAnswer(t.id, True, (0, 0)))
        self._start_receiver(t)
        return t

    def decline(self, ref: str | None, reason: str = "") -> Transfer:
        """Decline a pending offer."""
        t = self.find(ref, direction="in", states=(State.OFFERED,))
        self.node.send_control(t.peer, FileAnswer(t.id, False, reason=reason))
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
                     "path": t.path or t.source, "sha256": t.result or None}
                out.append(d)
            return out

    def get(self, transfer_id: str) -> Transfer | None:
        """The record of one transfer."""
        with self._lock:
            return self._transfers.get(transfer_id)

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
            hits = [t for t in pool if t.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise TransferError(f"no such transfer {ref!r} here; /transfers lists them")
        raise TransferError(f"{ref!r} matches {len(hits)} transfers; type more of the id")

    # -- receiving ------------------------------------------------------------------

    def _resume(self, t: Transfer) -> None:
        with self._lock:
            known = t.id in self._senders
        if known:
            self._start_receiver(t)
        else:
            self.node.send_control(t.peer, FileAnswer(t.id, True, (t.index, 0), "resume"))

    def _restart(self, transfer_id: str) -> None:
        t = self.get(transfer_id)
        if t is not None and t.state is State.ACCEPTED:
            self._start_receiver(t)

    def _start_receiver(self, t: Transfer) -> None:
        with self._lock:
            sender = self._senders.get(t.id)
            if sender is None or t.id in self._active:
                return
            generation = next(self._generations)
            self._active[t.id] = generation
            self._reoffered.discard(t.id)
        index = len(t.items) if t.state is State.DONE else t.index
        job = RecvJob(t.id, t.peer, sender[0], sender[1], generation, t.dest_dir,
                      tuple(RecvItem(i.path, i.size, i.dest, i.sha256) for i in t.items),
                      index, t.sha256, t.size)
        Receiver(job, self.node.identity, str(self.node.nick), self,
                 stall_s=self.stall_s).start()

    def wanted(self, transfer: str, generation: int) -> bool:
        """Stream threads ask this between chunks."""
        with self._lock:
            return self._active.get(transfer) == generation

    def progress(self, job: SendJob | RecvJob, done: int) -> None:
        """Emit throttled progress (the stream throttles)."""
        direction = "out" if isinstance(job, SendJob) else "in"
        self._emit("file_progress", transfer=job.transfer, done=done, size=job.total,
                   direction=direction)

    def file_complete(self, job: RecvJob, index: int, final: str, sha256: str) -> None:
        """Persist that file `index` is published."""
        with self._lock:
            t = self._transfers[job.transfer]
            items = list(t.items)
            items[index] = items[index].__class__(items[index].path, items[index].size,
                                                  items[index].dest, final, sha256)
            path = t.path
            if not t.folder:
                path = os.path.join(t.dest_dir, *items[index].dest[:-1], final)
            self._save(t.with_(items=tuple(items), index=index + 1, path=path))

    def received(self, job: RecvJob, sha256: str) -> None:
        """All verified: record and announce."""
        with self._lock:
            if self._active.get(job.transfer) == job.generation:
                del self._active[job.transfer]
            t = self._transfers[job.transfer]
            if t.state is State.DONE:
                return
            t = self._save(t.with_(state=State.DONE, result=sha256, index=len(t.items)))
        self._count("files_in")
        self._emit("file_done", transfer=t.id, path=t.path, sha256=sha256, direction="in",
                   peer=t.peer, name=t.name, size=t.size)

    def receive_failed(self, job: RecvJob, error: DataError) -> None:
        """A receive stream stopped: keep it resumable or fail it."""
        with self._lock:
            current = self._active.get(job.transfer) == job.generation
            if current:
                del self._active[job.transfer]
            t = self._transfers[job.transfer]
            again = current and error.resumable and job.transfer in self._reoffered
        if not current or t.state.finished:
            return
        log.info("receiving %s stopped: %s", t.id, error.reason)
        if error.resumable:
            self._emit("file_failed", transfer=t.id, reason=error.reason, direction="in",
                       resumable=True)
            if again:
                self._queue.put(("call", lambda: self._restart(t.id)))
            return
        self._finish(t, State.FAILED, error.reason)
        self.node.send_control(t.peer, FileCancel(t.id, error.reason[:200]))

    # -- sending (stream threads) ----------------------------------------------------

    def claim(self, transfer: str, peer: str) -> SendJob | str:
        """Serve a data request only for a transfer offered to this very peer."""
        with self._lock:
            t = self._transfers.get(transfer)
            if t is None or t.direction != "out" or t.peer != peer:
                return "no such transfer offered to you"
            if t.state.finished:
                return f"transfer is {t.state.value}"
            generation = next(self._generations)
            self._active[transfer] = generation
            self._deadlines.pop(transfer, None)
            if t.state is State.OFFERED:
                t = self._save(t.with_(state=State.ACCEPTED))
        root = Path(t.source)
        files = ((str(root), t.size),) if not t.folder else tuple(
            (str(root.joinpath(*i.path.split("/"))), i.size) for i in t.items)
        return SendJob(t.id, peer, generation, files, tuple(i.path for i in t.items), t.size)

    def sent(self, job: SendJob, sha256: str) -> None:
        """The receiver verified everything."""
        with self._lock:
            if self._active.get(job.transfer) == job.generation:
                del self._active[job.transfer]
            t = self._transfers[job.transfer]
            if t.state is State.DONE:
                return
            t = self._save(t.with_(state=State.DONE, result=sha256))
        self._count("files_out")
        self._emit("file_done", transfer=t.id, path=t.source, sha256=sha256, direction="out",
                   peer=t.peer, name=t.name, size=t.size)

    def send_failed(self, job: SendJob, error: DataError) -> None:
        """A send stream stopped."""
        with self._lock:
            current = self._active.get(job.transfer) == job.generation
            if current:
                del self._active[job.transfer]
            t = self._transfers[job.transfer]
        if not current or t.state.finished:
            return
        log.info("sending %s stopped: %s", t.id, error.reason)
        if error.resumable:
            self._emit("file_failed", transfer=t.id, reason=error.reason, direction="out",
                       resumable=True)
            return
        self._finish(t, State.FAILED, error.reason)


def _walk(root: Path) -> tuple[Item, ...]:
    """Regular files below `root` (symlinks not followed), relative paths with '/'."""
    items: list[Item] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            items.append(Item(rel, os.path.getsize(full)))
            if len(items) > MAX_FILES_PER_OFFER:
                raise TransferError(f"{root} has more than {MAX_FILES_PER_OFFER} files; "
                                    "send it as an archive")
    if not items:
        raise TransferError(f"{root} has no files to send")
    return tuple(items)


def _plan(t: Transfer, root: str) -> tuple[Item, ...]:
    """Choose safe, unused destination names below `root` for every file of an offer."""
    with names.open_dir(root, (), create=False) as fd:
        leaf = names.unique_name(fd, names.safe_relpath(t.name)[-1])
        if not t.folder:
            item = t.items[0]
            return (Item(item.path, item.size, (leaf,)),)
        os.mkdir(leaf, 0o755, dir_fd=fd)
    used: dict[tuple[str, ...], set[str]] = {}
    out = []
    for item in t.items:
        parts = names.safe_relpath(item.path)
        parent: tuple[str, ...] = (leaf,)
        for comp in parts[:-1]:
            used.setdefault(parent, set()).add(comp)
            parent = (*parent, comp)
        taken = used.setdefault(parent, set())
        name = next(names.numbered(parts[-1], n) for n in range(names.MAX_UNIQUE_TRIES)
                    if names.numbered(parts[-1], n) not in taken
                    and (*parent, names.numbered(parts[-1], n)) not in used)
        taken.add(name)
        out.append(Item(item.path, item.size, (*parent, name)))
    return tuple(out)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def attach(node: Any, **options: Any) -> TransferManager:
    """Add the transfer extension to a node (before start) and return it; idempotent."""
    for ext in node.extensions:
        if isinstance(ext, TransferManager):
            return ext
    defaults: dict[str, Callable[[], float]] = {
        "offer_timeout_s": lambda: _env_float("LANCHAT_OFFER_TIMEOUT_S", OFFER_TIMEOUT_S),
        "stall_s": lambda: _env_float("LANCHAT_FILE_STALL_S", STALL_S),
    }
    for key, value in defaults.items():
        options.setdefault(key, value())
    manager = TransferManager(**options)
    node.extensions.append(manager)
    node.subscribe(manager.on_event)
    return manager


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
