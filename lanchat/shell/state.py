"""What the shell shows besides the scrollback: peers, unread counts, bell, transfers.

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

    @property
    def fraction(self) -> float:
        """How much has moved, 0..1."""
        return min(1.0, self.done / self.size) if self.size else 1.0

    @property
    def rate(self) -> float:
        """Bytes per second since the first progress event seen."""
        elapsed = self.ts - self.first_ts
        return (self.done - self.first_done) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or None while unknown."""
        rate = self.rate
        return (self.size - self.done) / rate if rate > 0 else None


@dataclass(frozen=True)
class PeerView:
    """The few peer fields the shell needs."""

    id: str
    nick: str
    number: int
    online: bool

    @classmethod
    def of(cls, peer: Mapping[str, Any]) -> PeerView:
        """Build from the contract's peer object."""
        return cls(str(peer["id"]), str(peer["nick"]), int(peer["number"]),
                   bool(peer["online"]))


class ShellState:
    """Snapshots for the completer and toolbar; counters kept by the event thread."""

    def __init__(self, own_id: str = "", own_nick: str = "",
                 transfers: Callable[[], int] | None = None) -> None:
        self.own_id = own_id
        self.own_nick = own_nick
        self.target = "all"
        self.bell = True
        self.transfers_source = transfers
        self._by_id: dict[str, PeerView] = {}
        self.peers: tuple[PeerView, ...] = ()
        self.unread: Mapping[str, int] = MappingProxyType({})
        self.progress: Mapping[str, Progress] = MappingProxyType({})
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- writers (event thread, or the UI thread for `set_target`) ---------------------

    def load(self, peers: list[dict[str, Any]]) -> None:
        """Add peers known before the first event (events seen already win)."""
        with self._lock:
            for p in peers:
                self._by_id.setdefault(str(p["id"]), PeerView.of(p))
            self._publish()

    def apply(self, event: Event) -> None:
        """Update the snapshots for one event."""
        name = event.name
        if name in ("peer_joined", "peer_updated", "peer_left"):
            with self._lock:
                view = PeerView.of(event["peer"])
                self._by_id[view.id] = view
                self._publish()
        elif name == "message" and event["to"] == "direct":
            sender = str(event["from"]["id"])
            if sender != self.target:
                with self._lock:
                    counts = dict(self.unread)
                    counts[sender] = counts.get(sender, 0) + 1
                    self.unread = MappingProxyType(counts)
        elif name == "ready":
            self.own_id = str(event["id"])
            self.own_nick = str(event["nick"])
        elif name == "file_offer":
            self._names[str(event["transfer"])] = str(event.fields.get("name", ""))
        elif name == "file_progress":
            self._progress(event)
        elif name in ("file_done", "file_failed"):
            transfer = str(event["transfer"])
            if transfer in self.progress:
                with self._lock:
                    moving = dict(self.progress)
                    moving.pop(transfer, None)
                    self.progress = MappingProxyType(moving)

    def _progress(self, event: Event) -> None:
        transfer = str(event["transfer"])
        done, size = int(event["done"]), int(event["size"])
        name = str(event.fields.get("name") or self._names.get(transfer) or transfer[:8])
        with self._lock:
            moving = dict(self.progress)
            before = moving.get(transfer)
            if before is None or done < before.done:
                moving[transfer] = Progress(transfer, name, done, size, event.ts, done, event.ts)
            else:
                moving[transfer] = Progress(transfer, name, done, size, before.first_ts,
                                            before.first_done, event.ts)
            self.progress = MappingProxyType(moving)

    def set_target(self, target: str) -> None:
        """Plain lines now go to `target`; its messages count as read."""
        self.target = target
        if target in self.unread:
            with self._lock:
                counts = dict(self.unread)
                counts.pop(target, None)
                self.unread = MappingProxyType(counts)

    def _publish(self) -> None:
        self.peers = tuple(sorted(self._by_id.values(), key=lambda p: p.number))

    # -- readers (any thread) --------------------------------------------------------

    def peer(self, peer_id: str) -> PeerView | None:
        """The peer with this id in the current snapshot."""
        return next((p for p in self.peers if p.id == peer_id), None)

    def online(self) -> int:
        """How many peers are online."""
        return sum(1 for p in self.peers if p.online)

    def unread_total(self) -> int:
        """Direct messages received from peers other than the current target."""
        return sum(self.unread.values())

    def transfers(self) -> int:
        """Active file transfers (those moving, when nothing else reports them)."""
        if self.transfers_source is None:
            return len(self.progress)
        try:
            return int(self.transfers_source())
        except Exception:  # noqa: BLE001 - the toolbar never fails
            return 0
