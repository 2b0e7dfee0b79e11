"""The transfer book: every transfer this node knows, which stream moves it, its record.

`TransferBook` is the one owner of the transfer state that threads share: the records
(and their list numbers), which stream moves which transfer (a generation per claim),
where each sender listens, re-offers seen while a stream ran, the autoaccept list, the
counters. It writes records through its `Recorder` (recorder.py). Any thread calls it
(the control thread, stream threads, the event thread, callers of the public API); each
public method is one atomic step.

Lock discipline (checked on the source by tests/test_transfer_locks.py):
- the tables in `GUARDED` are read and changed only here, and only under `self._lock`;
  no other object names them;
- `self._lock` is a leaf: while it is held the book calls only its own `*_locked`
  helpers and the tables' own methods: never the disk, the node, or another part (the
  recorder's write lock is taken before it, when a write reads the current version).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from lanchat.transfer.recorder import Recorder
from lanchat.transfer.records import RecordStore, State, Transfer, TransferError, digest_fields

MAX_FINISHED_PER_PEER = 64  # finished incoming records kept per peer; older ones go

GUARDED = frozenset({"_transfers", "_numbers", "_active", "_senders", "_reoffered",
                     "_autoaccept", "_counters", "_stopping"})


class TransferBook:
    """The transfers of one node and who moves each; every method is thread-safe."""

    def __init__(self, records: RecordStore, emit: Callable[..., None],
                 autoaccept: Iterable[str] = ()) -> None:
        self.records = records
        self.recorder = Recorder(records, self.get, self.count)
        self._emit = emit
        self._lock = threading.Lock()
        self._transfers: dict[str, Transfer] = {}
        self._numbers: dict[str, int] = {}
        self._next_number = itertools.count(1)
        self._generations = itertools.count(1)
        self._active: dict[str, int] = {}  # transfer -> generation of the stream moving it
        self._senders: dict[str, tuple[str, int]] = {}  # in: the sender's data address
        self._reoffered: set[str] = set()  # offered again while a stream moved it
        self._autoaccept: set[str] = set(autoaccept) | records.autoaccept()
        self._counters: dict[str, int] = {}
        self._stopping = False  # the node stops: no stream may claim a transfer now

    # -- reads ----------------------------------------------------------------------------

    def get(self, transfer_id: str) -> Transfer | None:
        """The latest version of one record."""
        with self._lock:
            return self._transfers.get(transfer_id)

    def number(self, transfer_id: str) -> int:
        """The transfer's number in `/transfers` (0 once forgotten)."""
        with self._lock:
            return self._numbers.get(transfer_id, 0)

    def moving(self, transfer_id: str) -> bool:
        """True while a stream moves the transfer."""
        return self.generation(transfer_id) is not None

    def generation(self, transfer_id: str) -> int | None:
        """Which stream moves the transfer (None: none)."""
        with self._lock:
            return self._active.get(transfer_id)

    def knows_sender(self, transfer_id: str) -> bool:
        """True when the sender's data port of an incoming transfer is known."""
        with self._lock:
            return transfer_id in self._senders

    def senders_kept(self) -> int:
        """How many sender addresses are kept (bounded by the offers held)."""
        with self._lock:
            return len(self._senders)

    def wanted(self, transfer: str, generation: int) -> bool:
        """True while this stream is still the one that moves the transfer."""
        with self._lock:
            return self._active.get(transfer) == generation

    def autoaccepts(self, peer: str) -> bool:
        """True when this peer's offers are accepted without asking."""
        with self._lock:
            return peer in self._autoaccept

    def autoaccept_peers(self) -> set[str]:
        """Peer ids whose offers are accepted without asking."""
        with self._lock:
            return set(self._autoaccept)

    def counters(self) -> dict[str, int]:
        """A copy of the counters."""
        with self._lock:
            return dict(self._counters)

    def stats(self) -> dict[str, Any]:
        """Transfer counts by state, and how many move."""
        with self._lock:
            states: dict[str, int] = {}
            for t in self._transfers.values():
                states[t.state.value] = states.get(t.state.value, 0) + 1
            return {"counters": dict(self._counters), "states": states,
                    "active": len(self._active)}

    def select(self, *, direction: str | None = None, states: tuple[State, ...] = (),
               peer: str | None = None, idle: bool = False) -> list[Transfer]:
        """Records that fit, oldest first; `idle`: only those no stream moves."""
        with self._lock:
            return [t for t in self._ordered_locked()
                    if (direction is None or t.direction == direction)
                    and (not states or t.state in states)
                    and (peer is None or t.peer == peer)
                    and not (idle and t.id in self._active)]

    def rows(self) -> list[dict[str, Any]]:
        """Every known transfer, oldest first, as the plain dicts `/transfers` shows."""
        with self._lock:
            return [{"number": self._numbers[t.id], "transfer": t.id,
                     "direction": t.direction, "peer": t.peer, "nick": t.peer_nick,
                     "name": t.name, "size": t.size, "state": t.state.value,
                     "reason": t.reason, "moving": t.id in self._active,
                     "path": t.path or t.source, **digest_fields(t.hash, t.result or None)}
                    for t in self._ordered_locked()]

    def find(self, ref: str | None, *, direction: str | None = None,
             states: tuple[State, ...] = ()) -> Transfer:
        """A transfer by list number or id prefix; with no ref, the latest that fits."""
        pool = self.select(direction=direction, states=states)
        if ref is None:
            if not pool:
                raise TransferError("no pending offer; /transfers lists them")
            return pool[-1]
        ref = ref.strip().lower()
        if ref.isdigit():
            with self._lock:
                hits = [t for t in pool if self._numbers.get(t.id) == int(ref)]
            if hits:
                return hits[0]
        hits = [t for t in pool if t.id.lower().startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise TransferError(f"no such transfer {ref!r} here; /transfers lists them")
        raise TransferError(f"{ref!r} matches {len(hits)} transfers; type more of the id")

    def _ordered_locked(self) -> list[Transfer]:
        return sorted(self._transfers.values(), key=lambda t: (t.created, self._numbers[t.id]))

    # -- records --------------------------------------------------------------------------

    def load(self, now: float) -> list[Transfer]:
        """Read the records in the home (at start, before any other thread runs)."""
        loaded = self.records.load(now)
        with self._lock:
            for t in loaded:
                self._remember_locked(t)
        return loaded

    def add(self, t: Transfer, *, sender: tuple[str, int] | None = None) -> Transfer:
        """Keep and persist a new version of a record (with where its sender listens)."""
        with self._lock:
            self._remember_locked(t)
            if sender is not None:  # kept only for offers we hold; dropped when they finish
                self._senders[t.id] = sender
        self.persist(t.id)
        return t

    def _remember_locked(self, t: Transfer) -> None:
        if t.id not in self._numbers:
            self._numbers[t.id] = next(self._next_number)
        self._transfers[t.id] = t

    def count(self, key: str) -> None:
        """Add one to a counter."""
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1

    def set_autoaccept(self, peer: str, on: bool) -> None:
        """Accept (or stop accepting) this peer's offers without asking; persisted."""
        with self._lock:
            if on:
                self._autoaccept.add(peer)
            else:
                self._autoaccept.discard(peer)
        self.recorder.save_autoaccept(self.autoaccept_peers)

    def persist(self, transfer_id: str) -> None:
        """Write the latest version of a record (recorder.py)."""
        self.recorder.persist(transfer_id)

    def prune(self, peer: str) -> None:
        """Keep at most MAX_FINISHED_PER_PEER finished incoming records of one peer."""
        with self._lock:
            done = [x for x in self._ordered_locked() if x.peer == peer
                    and x.direction == "in" and x.state.finished]
            drop = done[:max(0, len(done) - MAX_FINISHED_PER_PEER)]
            for x in drop:
                del self._transfers[x.id]
                del self._numbers[x.id]
        self.recorder.delete(x.id for x in drop)

    def finish(self, t: Transfer, state: State, reason: str, *, detail: str = "",
               resumable: bool = False) -> Transfer:
        """End a transfer (failed, declined, cancelled): record it and say `file_failed`.
        One that ended meanwhile (a stream finished it; the caller held an older copy)
        stays as it ended."""
        with self._lock:
            self._forget_moves_locked(t.id)
            t = self._transfers.get(t.id, t)
            if t.state.finished:
                return t
            changes: dict[str, Any] = {}
            if t.direction == "in" and not t.dest_dir:
                changes["items"] = ()  # never accepted: keep the summary, not the file list
            t = t.with_(state=state, reason=reason if not detail else f"{reason}: {detail}",
                        **changes)
            self._remember_locked(t)
        self.recorder.forget((t.id,))
        self.persist(t.id)
        if t.direction == "in":
            self.prune(t.peer)
        fields: dict[str, Any] = {"transfer": t.id, "reason": reason,
                                  "direction": t.direction, "resumable": resumable}
        if detail:
            fields["detail"] = detail
        self._emit("file_failed", **fields)
        return t

    def _forget_moves_locked(self, transfer_id: str) -> None:
        self._active.pop(transfer_id, None)
        self._senders.pop(transfer_id, None)
        self._reoffered.discard(transfer_id)

    # -- offers ---------------------------------------------------------------------------

    def incoming(self, transfer_id: str, peer: str,
                 sender: tuple[str, int] | None) -> tuple[Transfer | None, int]:
        """An offer arrived: the record it repeats (noting a new data port), or None and
        how many offers of this peer wait for an answer. Raises TransferError when the id
        is another peer's or one of ours."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            if t is None:
                return None, sum(1 for x in self._transfers.values() if x.peer == peer
                                 and x.direction == "in" and x.state is State.OFFERED)
            if t.peer != peer or t.direction != "in":
                raise TransferError("the id is taken")
            if sender is not None and t.state in (State.OFFERED, State.ACCEPTED, State.DONE):
                self._senders[transfer_id] = sender
            return t, 0

    def note_reoffer(self, transfer_id: str) -> bool:
        """The sender offered again: True when a stream moves the transfer (it restarts
        when that stream drops)."""
        with self._lock:
            if transfer_id not in self._active:
                return False
            self._reoffered.add(transfer_id)
            return True

    # -- streams --------------------------------------------------------------------------

    def start_receive(self, transfer_id: str) -> tuple[Transfer, int, tuple[str, int]] | None:
        """Claim an accepted incoming transfer for a new receive stream: the record, the
        stream's generation and the sender's address; None when it moves already or the
        sender's data port is unknown."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            sender = self._senders.get(transfer_id)
            if (t is None or sender is None or transfer_id in self._active
                    or self._stopping):
                return None
            generation = self._claim_locked(transfer_id)
            self._reoffered.discard(transfer_id)
            return t, generation, sender

    def claim_receive(self, transfer_id: str, peer: str) -> tuple[Transfer, int] | str:
        """A foreign sender pushes the data of an accepted offer: the record and the
        writer's generation, or why not."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            if t is None or t.direction != "in" or t.peer != peer:
                return "no such transfer from you"
            if t.state is not State.ACCEPTED:
                return f"transfer is {t.state.value}"
            if transfer_id in self._active:
                return "transfer is already moving"
            if self._stopping:
                return "the node is stopping"
            return t, self._claim_locked(transfer_id)

    def claim_send(self, transfer_id: str, peer: str) -> tuple[Transfer, int] | str:
        """A data request for an outgoing transfer: the record (accepted now if it was only
        offered) and the stream's generation, or why not."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            if t is None or t.direction != "out" or t.peer != peer:
                return "no such transfer offered to you"
            if t.state.finished and t.state is not State.DONE:
                return f"transfer is {t.state.value}"
            if self._stopping:
                return "the node is stopping"
            # DONE: the receiver missed our answer and confirms what it has
            generation = self._claim_locked(transfer_id)
            accepted = t.state is State.OFFERED
            if accepted:
                t = t.with_(state=State.ACCEPTED)
                self._remember_locked(t)
        if accepted:
            self.persist(t.id)
        return t, generation

    def _current_locked(self, transfer_id: str, generation: int) -> Transfer | None:
        """The record, if this stream is still the one that moves it."""
        if self._active.get(transfer_id) != generation:
            return None
        return self._transfers.get(transfer_id)

    def _claim_locked(self, transfer_id: str) -> int:
        generation = next(self._generations)
        self._active[transfer_id] = generation
        return generation

    def stop_moving(self) -> None:
        """Every stream stops at its next chunk, and none may start (the node stops)."""
        with self._lock:
            self._stopping = True
            self._active.clear()

    def file_published(self, transfer_id: str, generation: int, index: int, final: str,
                       digest: str) -> None:
        """File `index` of a receive is verified and in place under `final`."""
        with self._lock:
            t = self._current_locked(transfer_id, generation)
            if t is None or t.state.finished or index >= len(t.items):
                return
            items = list(t.items)
            items[index] = replace(items[index], final=final, sha256=digest)
            path = t.path
            if not t.folder:
                path = os.path.join(t.dest_dir, *items[index].dest[:-1], final)
            self._remember_locked(t.with_(items=tuple(items), index=index + 1, path=path))
        self.recorder.log_file(transfer_id, index)
        self.recorder.persist_soon(transfer_id)

    def hashed(self, transfer_id: str, index: int, stamp: str, digest: str) -> None:
        """Keep a sent file's digest with its stamp, so a confirm need not read it again."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            if t is None or index >= len(t.items) or t.items[index].stamp == stamp:
                return
            items = list(t.items)
            items[index] = replace(items[index], stamp=stamp, sha256=digest)
            self._remember_locked(t.with_(items=tuple(items)))
        self.recorder.persist_soon(transfer_id)

    def done(self, transfer_id: str, generation: int, digest: str,
             alg: str | None = None) -> Transfer | None:
        """The stream verified everything: the record, now DONE; None when the stream was
        superseded or the transfer had ended meanwhile (cancelled, or a confirm)."""
        with self._lock:
            t = self._transfers.get(transfer_id)
            if t is None:
                return None
            current = self._active.get(transfer_id) == generation
            if current:
                del self._active[transfer_id]
            elif t.direction == "in":  # a receive superseded: its end is not the outcome
                return None
            if t.direction == "in":
                self._senders.pop(transfer_id, None)
            finished = t.state.finished
            if not finished:
                t = t.with_(state=State.DONE, result=digest, hash=alg or t.hash,
                            index=len(t.items) if t.direction == "in" else t.index)
                self._remember_locked(t)
        self.recorder.forget((transfer_id,))
        if finished:
            return None
        self.persist(t.id)
        self.count("files_in" if t.direction == "in" else "files_out")
        if t.direction == "in":
            self.prune(t.peer)
        return t

    def stream_ended(self, transfer_id: str, generation: int) -> tuple[bool, Transfer | None,
                                                                          bool]:
        """A stream stopped short: (was it the current one, the record, was the transfer
        offered again meanwhile); progress kept in memory is written."""
        with self._lock:
            current = self._active.get(transfer_id) == generation
            if current:
                del self._active[transfer_id]
            t = self._transfers.get(transfer_id)
            again = current and transfer_id in self._reoffered
        if t is not None:
            self.recorder.flush(transfer_id)
        return current, t, again
