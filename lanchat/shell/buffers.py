"""Buffers: one per conversation (everyone, each peer, each room) and one for notices.

Each buffer keeps its scrollback (from the store at start, then live), an unread count, the
highest activity since it was last read (the hotlist) and a read marker kept across
restarts in `<home>/buffers.json`. The event thread adds lines, the UI thread switches;
one lock covers both, and the toolbar reads `views`, a tuple replaced whole.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanchat.transfer.records import write_atomic

if TYPE_CHECKING:  # the type only: this module runs without importing prompt-toolkit
    from prompt_toolkit.formatted_text import StyleAndTextTuples as Fragments
else:
    Fragments = list

log = logging.getLogger(__name__)

NOTICES = "lanchat"  # the node's own buffer: errors, warnings, what has no conversation
EVERYONE = "all"  # broadcasts, and who comes and goes on the LAN
STATE_FILE = "buffers.json"
STATE_VERSION = 1
SCROLLBACK_LINES = 500  # per buffer, in memory; the store keeps everything
MAX_BUFFERS = 64  # more conversations than this: the oldest quiet direct ones are closed
SENT_TRACKED = 2000  # outgoing messages whose delivery marks are kept up to date


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


class Sent:
    """One outgoing message and how many of its recipients have stored it."""

    __slots__ = ("msg_id", "recipients", "delivered", "group", "ts", "key", "text", "total",
                 "acked_before")

    def __init__(self, msg_id: str, recipients: Iterable[str], *, group: bool, key: str,
                 text: str = "", ts: float | None = None, total: int | None = None,
                 acked_before: int = 0) -> None:
        self.msg_id = msg_id
        self.key = key  # the buffer it was sent in
        self.text = text
        self.recipients = frozenset(recipients)  # empty when only counts are known
        self.total = len(self.recipients) if total is None else total
        self.acked_before = acked_before  # stored already when read from the history
        self.delivered: frozenset[str] = frozenset()
        self.group = group
        self.ts = time.time() if ts is None else ts

    @property
    def count(self) -> int:
        """How many recipients have it."""
        got = self.delivered & self.recipients if self.recipients else self.delivered
        return min(self.total, self.acked_before + len(got))

    @property
    def complete(self) -> bool:
        """Every recipient has it."""
        return self.count >= self.total

    def mark(self) -> str:
        """`✓` for a delivered direct message, `…` while not yet; `4/5` for a group
        (nothing for a room with nobody else in it)."""
        if not self.group:
            return "✓" if self.complete else "…"
        if not self.total:
            return ""
        n, total = self.count, self.total
        return f"{n}/{total} ✓" if n == total else f"{n}/{total}"


class Line:
    """One scrollback entry: fragments, plus the delivery mark of an outgoing message."""

    __slots__ = ("fragments", "sent", "hold_until", "shown_incomplete", "buffer")

    def __init__(self, fragments: Fragments, sent: Sent | None = None,
                 hold_until: float = 0.0) -> None:
        self.fragments = fragments
        self.sent = sent
        self.hold_until = hold_until  # monotonic; the printer waits this long for the mark
        self.shown_incomplete = False
        self.buffer = ""  # the key of the buffer it was added to

    def held(self, now: float) -> bool:
        """Whether the printer should still wait for the delivery mark."""
        return self.sent is not None and not self.sent.complete and now < self.hold_until

    def render(self) -> Fragments:
        """The fragments, with the delivery mark as it is now."""
        mark = self.sent.mark() if self.sent is not None else ""
        if not mark:
            return self.fragments
        return [*self.fragments, ("class:mark", " " + mark)]


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
        self.path = home / STATE_FILE if home is not None else None
        self._by_key: dict[str, Buffer] = {}
        self._order: list[str] = []
        self.current = EVERYONE
        self.views: tuple[BufferView, ...] = ()
        self._sent: dict[str, list[Line]] = {}
        self._early: dict[str, frozenset[str]] = {}  # delivered before its line was added
        self._dirty = False
        self._saved: dict[str, Any] = {}
        self.loading = True  # until `loaded()`: live incoming ids are kept to skip below,
        # and lines are not written (the current buffer is written whole then)
        self._live_ids: set[str] = set()
        self._stored_ids: set[str] = set()  # incoming ids read from the store at start
        self.first_run = True
        self._load_file()
        self.ensure(NOTICES, Kind.NOTICES, NOTICES)
        self.ensure(EVERYONE, Kind.EVERYONE, EVERYONE)
        for key, name in self._saved.get("buffers", []):
            if key not in (NOTICES, EVERYONE):
                self.ensure(key, Kind.ROOM if key.startswith("#") else Kind.DIRECT, name)

    # -- persistence -------------------------------------------------------------------

    def _load_file(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return
        self.first_run = False
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return
        buffers = data.get("buffers", [])
        read = data.get("read", {})
        self._saved = {
            "buffers": [(str(k), str(n)) for k, n in buffers
                        if isinstance(k, str) and isinstance(n, str)][:MAX_BUFFERS]
            if isinstance(buffers, list) and all(isinstance(b, list) and len(b) == 2
                                                 for b in buffers) else [],
            "read": {str(k): str(v) for k, v in read.items()} if isinstance(read, dict)
            else {},
        }

    def save(self, *, force: bool = False) -> None:
        """Write the buffer list and read markers if they changed (any thread)."""
        if self.path is None:
            return
        with self.lock:
            if not (self._dirty or force):
                return
            data = {"version": STATE_VERSION,
                    "buffers": [[k, self._by_key[k].name] for k in self._order],
                    "read": {k: b.last_read for k, b in self._by_key.items() if b.last_read}}
            self._dirty = False
        try:
            write_atomic(self.path, json.dumps(data, indent=1).encode())
        except OSError as exc:
            log.warning("cannot save read markers to %s: %s", self.path, exc)

    # -- building ----------------------------------------------------------------------

    def ensure(self, key: str, kind: Kind, name: str) -> Buffer:
        """The buffer for `key`, made (at the end of the list) if new."""
        with self.lock:
            buf = self._by_key.get(key)
            if buf is None:
                if len(self._order) >= MAX_BUFFERS:
                    self._close_oldest_direct()
                buf = Buffer(key, kind, name)
                buf.last_read = self._saved.get("read", {}).get(key, "")
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
             level: Level = Level.MESSAGE) -> None:
        """Add a line read from the store at start, oldest first; incoming lines after the
        saved read marker count as unread (on the very first run, nothing is unread)."""
        with self.lock:
            if incoming_id and incoming_id in self._live_ids:
                return  # arrived as an event while the store was read: shown once
            if incoming_id:
                self._stored_ids.add(incoming_id)
            buf = self.ensure(key, kind, name)
            line.buffer = key
            buf.stored.append(line)
            if line.sent is not None and not line.sent.complete:
                self._track(line)
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
            level: Level = Level.MESSAGE) -> bool:
        """Append a line; return whether it is in the current buffer (to be written)."""
        with self.lock:
            if incoming_id and incoming_id in self._stored_ids:
                return False  # read from the store already; its event came after
            buf = self.ensure(key, kind, name)
            line.buffer = key
            buf.lines.append(line)
            buf.touched = time.time()
            if incoming_id:
                buf.last_in = incoming_id
                if self.loading:
                    self._live_ids.add(incoming_id)
            if line.sent is not None:
                self._track(line)
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

    def _track(self, line: Line) -> None:
        sent = line.sent
        assert sent is not None
        early = self._early.pop(sent.msg_id, None)
        if early:  # acked before the command that sent it returned
            sent.delivered = sent.delivered | early
        self._sent.setdefault(sent.msg_id, []).append(line)
        while len(self._sent) > SENT_TRACKED:
            del self._sent[next(iter(self._sent))]

    def delivered(self, msg_id: str, peer_id: str) -> tuple[Sent, list[Line]] | None:
        """Record that `peer_id` stored `msg_id`; return it and its lines, if tracked."""
        with self.lock:
            lines = self._sent.get(msg_id)
            if not lines:  # not shown yet (or not ours to show): kept a little while
                self._early[msg_id] = self._early.pop(msg_id, frozenset()) | {peer_id}
                while len(self._early) > SENT_TRACKED:
                    del self._early[next(iter(self._early))]
                return None
            sent = lines[0].sent
            assert sent is not None
            sent.delivered = sent.delivered | {peer_id}
            if sent.complete:
                del self._sent[msg_id]
            return sent, lines

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
