"""What the shell shows besides the scrollback: peers, bell, transfers and their progress.

The event thread replaces each snapshot whole; the UI thread only reads references, so the
completer and the toolbar never wait and never call the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lanchat.events import Event
from lanchat.naming import PEER_EVENTS, UNKNOWN_TRUST, NameIndex

# The rate shown is over about this long (older samples are forgotten), so it follows
# changes and does not count the time before the first byte.
RATE_WINDOW_S = 3.0


@dataclass(frozen=True)
class Progress:
    """One moving file as the toolbar draws it."""

    transfer: str
    name: str
    done: int
    size: int
    first_ts: float
    first_done: int
    ts: float
    peer: str = ""
    direction: str = "in"

    @property
    def fraction(self) -> float:
        """How much has moved, 0..1."""
        return min(1.0, self.done / self.size) if self.size else 1.0

    @property
    def rate(self) -> float:
        """Bytes per second over the recent window."""
        elapsed = self.ts - self.first_ts
        return (self.done - self.first_done) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or None while unknown."""
        rate = self.rate
        return (self.size - self.done) / rate if rate > 0 else None


@dataclass(frozen=True)
class TransferView:
    """One unfinished transfer: who, what, and whether it still waits for an answer."""

    transfer: str
    name: str
    peer: str
    nick: str
    direction: str
    waiting: bool


@dataclass(frozen=True)
class PeerView:
    """The few peer fields the shell needs."""

    id: str
    nick: str
    number: int
    online: bool
    trust: str = UNKNOWN_TRUST

    @classmethod
    def of(cls, peer: Mapping[str, Any]) -> PeerView:
        """Build from the contract's peer object."""
        return cls(str(peer["id"]), str(peer["nick"]), int(peer["number"]),
                   bool(peer["online"]), str(peer.get("trust") or UNKNOWN_TRUST))


TransfersSource = Callable[[], list[dict[str, Any]]]


class ShellState:
    """Snapshots for the completer and toolbar, kept by the event thread."""

    def __init__(self, own_id: str = "", own_nick: str = "",
                 transfers: TransfersSource | None = None) -> None:
        self.own_id = own_id
        self.own_nick = own_nick
        self.bell = True
        self.starting = False  # the prompt is up and the node is still starting behind it
        self.transfers_source = transfers
        self._by_id: dict[str, PeerView] = {}
        self.peers: tuple[PeerView, ...] = ()
        self.names = NameIndex(())
        self.progress: Mapping[str, Progress] = MappingProxyType({})
        self.unfinished: Mapping[str, TransferView] = MappingProxyType({})
        self._lock = threading.Lock()

    # -- writers (event thread) --------------------------------------------------------

    def load(self, peers: list[dict[str, Any]]) -> None:
        """Add peers known before the first event (events seen already win)."""
        with self._lock:
            for p in peers:
                self._by_id.setdefault(str(p["id"]), PeerView.of(p))
            self._publish()

    def apply(self, event: Event) -> None:
        """Update the snapshots for one event."""
        name = event.name
        if name in PEER_EVENTS:
            with self._lock:
                view = PeerView.of(event["peer"])
                self._by_id[view.id] = view
                self._publish()
        elif name == "ready":
            self.own_id = str(event["id"])
            self.own_nick = str(event["nick"])
        elif name == "file_progress":
            self._progress(event)
        elif name in ("file_done", "file_failed"):
            transfer = str(event["transfer"])
            if transfer in self.progress:
                with self._lock:
                    moving = dict(self.progress)
                    moving.pop(transfer, None)
                    self.progress = MappingProxyType(moving)
        if name.startswith("file_") and name != "file_progress":
            self.refresh_transfers()

    def refresh_transfers(self) -> None:
        """Read the unfinished transfers again (after a file event or command)."""
        if self.transfers_source is None:
            return
        try:
            rows = self.transfers_source()
        except Exception:  # noqa: BLE001 - the toolbar goes on with what it had
            return
        self.unfinished = MappingProxyType({
            str(r["transfer"]): TransferView(str(r["transfer"]), str(r["name"]),
                                             str(r["peer"]), str(r["nick"]),
                                             str(r["direction"]), r["state"] == "offered")
            for r in rows if r["state"] in ("offered", "accepted")})

    def _progress(self, event: Event) -> None:
        transfer = str(event["transfer"])
        done, size = int(event["done"]), int(event["size"])
        known = self.unfinished.get(transfer)
        if known is None or known.waiting:  # accepted since (or auto-accepted): read again
            self.refresh_transfers()
            known = self.unfinished.get(transfer)
        name = str(event.fields.get("name") or (known.name if known else "") or transfer[:8])
        peer = self.display(known.peer, known.nick) if known else ""
        direction = str(event.fields.get("direction") or (known.direction if known else "in"))
        with self._lock:
            moving = dict(self.progress)
            before = moving.get(transfer)
            if before is None or done < before.done:
                first_ts, first_done = event.ts, done
            else:
                first_ts, first_done = before.first_ts, before.first_done
                if event.ts - first_ts > RATE_WINDOW_S:  # slide: the previous sample starts it
                    first_ts, first_done = before.ts, before.done
            moving[transfer] = Progress(transfer, name, done, size, first_ts, first_done,
                                        event.ts, peer, direction)
            self.progress = MappingProxyType(moving)

    def _publish(self) -> None:
        self.peers = tuple(sorted(self._by_id.values(), key=lambda p: p.number))
        self.names = NameIndex(self.peers)

    # -- readers (any thread) --------------------------------------------------------

    def peer(self, peer_id: str) -> PeerView | None:
        """The peer with this id in the current snapshot."""
        return self._by_id.get(peer_id)

    def display(self, peer_id: str, nick: str) -> str:
        """A peer's name on screen (lanchat/naming.py): an id suffix when another known
        name is the same or looks alike, a mark when verified or trusted; safe text."""
        peer = self.peer(peer_id)
        return self.names.display(peer if peer is not None else {"id": peer_id, "nick": nick})

    def online(self) -> int:
        """How many peers are online."""
        return sum(1 for p in self.peers if p.online)

    def transfers(self) -> tuple[int, int]:
        """(moving or accepted, offers waiting for an answer)."""
        views = self.unfinished.values()
        waiting = sum(1 for t in views if t.waiting)
        active = max(len(views) - waiting, len(self.progress))
        return active, waiting
