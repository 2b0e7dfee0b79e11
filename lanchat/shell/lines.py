"""A line of scrollback, and the delivery marks of outgoing messages.

A `Line` is fragments to print, plus the `Sent` record of an outgoing message whose mark
(`✓`, `4/5`, `…`) the printer shows as it is when the line is written. `Marks` keeps the
lines of messages still waiting for acks, so a `delivered` event updates them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: this module runs without importing prompt-toolkit
    from prompt_toolkit.formatted_text import StyleAndTextTuples as Fragments
else:
    Fragments = list

SENT_TRACKED = 2000  # outgoing messages whose delivery marks are kept up to date


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


class Marks:
    """Outgoing lines whose mark is not complete yet, by message id (the caller locks)."""

    def __init__(self) -> None:
        self._sent: dict[str, list[Line]] = {}
        self._early: dict[str, frozenset[str]] = {}  # delivered before its line was added

    def track(self, line: Line) -> None:
        """Keep `line` up to date as its message's recipients store it."""
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
