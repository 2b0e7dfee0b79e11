"""Buffers: one per conversation (everyone, each peer, each room) and one for notices.

Each buffer keeps its scrollback (from the store at start, then live), an unread count, the
highest activity since it was last read (the hotlist) and a read marker kept across
restarts in `<home>/buffers.json`. The event thread adds lines, the UI thread switches;
one lock covers both, and the toolbar reads `views`, a tuple replaced whole.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lanchat.shell.lines import Line, Marks, Sent
from lanchat.shell.read_markers import ReadMarkers

NOTICES = "lanchat"  # the node's own buffer: errors, warnings, what has no conversation
EVERYONE = "all"  # broadcasts, and who comes and goes on the LAN
SCROLLBACK_LINES = 500  # per buffer, in memory; the store keeps everything
MAX_BUFFERS = 64  # more conversations than this: the oldest quiet direct ones are closed

__all__ = ["EVERYONE", "NOTICES", "SCROLLBACK_LINES", "Buffer", "BufferView", "Buffers", "Kind",
           "Level", "Line", "Sent", "mentions"]


class Kind(enum.Enum):
    """What a buffer holds."""

    NOTICES = "notices"
    EVERYONE = "everyone"
    DIRECT = "direct"
    ROOM = "room"


class Level(enum.IntEnum):
    """Activity in a buffer not being looked at, lowest first (weechat's hotlist)."""

    NONE = 0
    LOW = 1  # someone came or went
    MESSAGE = 2  # a message, an error, a file event
    PRIVATE = 3  # a direct message or an offer to you
    HIGHLIGHT = 4  # your nick was mentioned


def mentions(text: str, nick: str) -> bool:
    """Whether `text` names `nick` as a word (case does not matter)."""
    if not nick:
        return False
    return re.search(rf"(?<!\w){re.escape(nick)}(?!\w)", text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class BufferView:
    """One buffer as the toolbar and completer see it."""

    number: int
    key: str
    name: str
    kind: Kind
    unread: int
    level: Level
    current: bool
    parted: bool


class Buffer:
    """One conversation's scrollback and read state (guarded by the Buffers lock)."""

    def __init__(self, key: str, kind: Kind, name: str) -> None:
        self.key = key
        self.kind = kind
        self.name = name
        self.lines: deque[Line] = deque(maxlen=SCROLLBACK_LINES)
        self.unread = 0
        self.level = Level.NONE
        self.last_read = ""  # id of the last incoming message seen here
        self.last_in = ""  # id of the last incoming message added
        self.parted = False
        self.touched = time.time()
        self.stored: list[Line] = []  # read from the store at start, put before `lines`
        self.stored_unread = 0
        self.stored_level = Level.NONE
        self.stored_last_in = ""


class Buffers:
    """Every buffer, their order, the current one; thread-safe."""

    def __init__(self, home: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.markers = ReadMarkers(home, MAX_BUFFERS)
        self._by_key: dict[str, Buffer] = {}
        self._order: list[str] = []
        self.current = EVERYONE
        self.views: tuple[BufferView, ...] = ()
        self._marks = Marks()
        self._dirty = False
        self.loading = True  # until `loaded()`: live incoming ids are kept to skip below,
        # and lines are not written (the current buffer is written whole then)
        self._live_ids: set[str] = set()
        self._stored_ids: set[str] = set()  # incoming ids read from the store at start
        self.first_run = not self.markers.found
        self.ensure(NOTICES, Kind.NOTICES, NOTICES)
        self.ensure(EVERYONE, Kind.EVERYONE, EVERYONE)
        for key, name in self.markers.buffers:
            if key not in (NOTICES, EVERYONE):
                self.ensure(key, Kind.ROOM if key.startswith("#") else Kind.DIRECT, name)

    def save(self, *, force: bool = False) -> None:
        """Write the buffer list and read markers if they changed (any thread)."""
        with self.lock:
            if not (self._dirty or force):
                return
            buffers = [(k, self._by_key[k].name) for k in self._order]
            read = {k: b.last_read for k, b in self._by_key.items() if b.last_read}
            self._dirty = False
        self.markers.save(buffers, read)

    # -- building ----------------------------------------------------------------------

    def ensure(self, key: str, kind: Kind, name: str) -> Buffer:
        """The buffer for `key`, made (at the end of the list) if new."""
        with self.lock:
            buf = self._by_key.get(key)
            if buf is None:
                if len(self._order) >= MAX_BUFFERS:
                    self._close_oldest_direct()
                buf = Buffer(key, kind, name)
                buf.last_read = self.markers.read.get(key, "")
                self._by_key[key] = buf
                self._order.append(key)
                self._dirty = True
                self._publish()
            return buf

    def _close_oldest_direct(self) -> None:
        quiet = [self._by_key[k] for k in self._order
                 if self._by_key[k].kind is Kind.DIRECT and k != self.current]
        if quiet:
            self.close(min(quiet, key=lambda b: b.touched).key)

    def load(self, key: str, kind: Kind, name: str, line: Line, *, incoming_id: str = "",
             own_id: str = "", level: Level = Level.MESSAGE) -> None:
        """Add a line read from the store at start, oldest first; incoming lines after the
        saved read marker count as unread (on the very first run, nothing is unread).
        `own_id`: the id of an own message (shown once, whether read or sent meanwhile)."""
        with self.lock:
            seen = incoming_id or own_id
            if seen and seen in self._live_ids:
                return  # arrived as an event while the store was read: shown once
            if seen:
                self._stored_ids.add(seen)
            buf = self.ensure(key, kind, name)
            line.buffer = key
            buf.stored.append(line)
            if line.sent is not None and not line.sent.complete:
                self._marks.track(line)
            if not incoming_id:
                return
            buf.stored_last_in = incoming_id
            if self.first_run or incoming_id == buf.last_read:
                buf.stored_unread, buf.stored_level = 0, Level.NONE
            else:
                buf.stored_unread += 1
                buf.stored_level = max(buf.stored_level, level)

    def loaded(self) -> None:
        """History is in (before what arrived meanwhile); the current buffer is read."""
        with self.lock:
            for buf in self._by_key.values():
                merged = [*buf.stored, *buf.lines][-SCROLLBACK_LINES:]
                buf.lines = deque(merged, maxlen=SCROLLBACK_LINES)
                buf.unread += buf.stored_unread
                buf.level = max(buf.level, buf.stored_level)
                if not buf.last_in:  # nothing newer arrived meanwhile
                    buf.last_in = buf.stored_last_in
                if self.first_run and buf.stored_last_in:
                    buf.last_read = buf.stored_last_in
                buf.stored = []
            self.loading = False
            self._live_ids.clear()
            self._read(self._by_key[self.current])
            self._dirty = True
            self._publish()

    # -- the event thread --------------------------------------------------------------

    def add(self, key: str, kind: Kind, name: str, line: Line, *, incoming_id: str = "",
            own_id: str = "", level: Level = Level.MESSAGE) -> bool:
        """Append a line; return whether it is in the current buffer (to be written).
        `own_id`: an own message's id (its `sent` event), kept out of the read marker."""
        with self.lock:
            seen = incoming_id or own_id
            if seen and seen in self._stored_ids:
                return False  # read from the store already; its event came after
            buf = self.ensure(key, kind, name)
            line.buffer = key
            buf.lines.append(line)
            buf.touched = time.time()
            if seen and self.loading:
                self._live_ids.add(seen)
            if incoming_id:
                buf.last_in = incoming_id
            if line.sent is not None:
                self._marks.track(line)
            if key == self.current:
                if incoming_id:
                    buf.last_read = incoming_id
                    self._dirty = True
                return True
            if level >= Level.MESSAGE:
                buf.unread += 1
            if level > buf.level:
                buf.level = level
                self._publish()
            elif level >= Level.MESSAGE:
                self._publish()
            return False

    def delivered(self, msg_id: str, peer_id: str) -> tuple[Sent, list[Line]] | None:
        """Record that `peer_id` stored `msg_id`; return it and its lines, if tracked."""
        with self.lock:
            return self._marks.delivered(msg_id, peer_id)

    def rename(self, key: str, name: str) -> None:
        """A peer's nick changed: its buffer follows."""
        with self.lock:
            buf = self._by_key.get(key)
            if buf is not None and buf.name != name:
                buf.name = name
                self._dirty = True
                self._publish()

    def set_parted(self, key: str, parted: bool) -> None:
        """A room was left (kept, dimmed, until closed) or joined again."""
        with self.lock:
            buf = self._by_key.get(key)
            if buf is not None and buf.parted != parted:
                buf.parted = parted
                self._publish()

    # -- the UI thread -----------------------------------------------------------------

    def find(self, ref: str, resolve: Callable[[str], str | None] | None = None
             ) -> Buffer | None:
        """A buffer by number, key or name (case-insensitive); `resolve` maps a peer
        reference to a key as a last resort."""
        ref = ref.strip()
        with self.lock:
            if ref.isdigit() and 1 <= int(ref) <= len(self._order):
                return self._by_key[self._order[int(ref) - 1]]
            if ref in self._by_key:
                return self._by_key[ref]
            named = [b for b in self._by_key.values() if b.name.lower() == ref.lower()]
            if len(named) == 1:
                return named[0]
        key = resolve(ref) if resolve is not None else None
        with self.lock:
            return self._by_key.get(key) if key else None

    def switch(self, key: str) -> Buffer:
        """Make `key` the current buffer; its lines count as read."""
        with self.lock:
            buf = self._by_key[key]
            self.current = key
            self._read(buf)
            self._publish()
            return buf

    def _read(self, buf: Buffer) -> None:
        buf.unread, buf.level = 0, Level.NONE
        if buf.last_in and buf.last_read != buf.last_in:
            buf.last_read = buf.last_in
            self._dirty = True

    def neighbour(self, step: int) -> str:
        """The key `step` places from the current buffer, wrapping around."""
        with self.lock:
            i = self._order.index(self.current)
            return self._order[(i + step) % len(self._order)]

    def most_active(self) -> str | None:
        """The buffer with the highest unread activity (oldest first among equals)."""
        with self.lock:
            active = [self._by_key[k] for k in self._order
                      if self._by_key[k].level >= Level.MESSAGE]
            if not active:
                return None
            return max(active, key=lambda b: (b.level, -self._order.index(b.key))).key

    def close(self, key: str) -> None:
        """Drop a direct or room buffer (its history stays in the store)."""
        with self.lock:
            buf = self._by_key.get(key)
            if buf is None or buf.kind in (Kind.NOTICES, Kind.EVERYONE):
                return
            if key == self.current:
                self.current = EVERYONE
            del self._by_key[key]
            self._order.remove(key)
            self._dirty = True
            self._publish()

    def clear(self, key: str) -> None:
        """Forget a buffer's scrollback in memory (/clear)."""
        with self.lock:
            self._by_key[key].lines.clear()

    def tail(self, key: str, n: int) -> list[Line]:
        """The last `n` lines of a buffer."""
        with self.lock:
            lines = self._by_key[key].lines
            return list(lines)[-n:]

    def get(self, key: str) -> Buffer | None:
        """The buffer for `key`, if open."""
        with self.lock:
            return self._by_key.get(key)

    def unread_by_key(self) -> dict[str, int]:
        """Unread counts of buffers that have any."""
        with self.lock:
            return {k: b.unread for k, b in self._by_key.items() if b.unread}

    def _publish(self) -> None:
        self.views = tuple(
            BufferView(i + 1, k, b.name, b.kind, b.unread, b.level, k == self.current,
                       b.parted)
            for i, k in enumerate(self._order) for b in (self._by_key[k],))
