"""Warnings said once: a pin conflict, a refused key, a lost session, a name taken.

Each warning has a key (what it is about); it is said the first time, then at most once
per REPEAT_S while it goes on, and stays listed (for `doctor`) until it is resolved or has
not recurred for FORGET_AFTER_S. No I/O; callers pass `now`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

REPEAT_S = 3600.0  # a warning that goes on is said again at most this often
FORGET_AFTER_S = 24 * 3600.0  # one not seen again for this long is no longer outstanding
MAX_NOTICES = 256  # outstanding warnings kept; the oldest go first


@dataclass(frozen=True)
class Notice:
    """One outstanding warning."""

    key: str
    code: str
    message: str
    first: float
    last: float
    said: float
    count: int

    def public(self) -> dict[str, object]:
        """As doctor and `--json` show it."""
        return {"code": self.code, "message": self.message, "first": self.first,
                "last": self.last, "count": self.count}


class Notices:
    """Outstanding warnings, each said once and then at most every REPEAT_S; thread-safe."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        self.repeat_s = repeat_s
        self._items: dict[str, Notice] = {}
        self._lock = threading.Lock()
        self.suppressed = 0

    def say(self, key: str, code: str, message: str, now: float) -> bool:
        """Record the warning; True if it is to be said now (first time, or after
        REPEAT_S), False if it was said recently (counted in `suppressed`)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and now - old.last > FORGET_AFTER_S:
                old = None
            if old is None:
                self._items[key] = Notice(key, code, message, now, now, now, 1)
                while len(self._items) > MAX_NOTICES:
                    del self._items[next(iter(self._items))]
                return True
            due = now - old.said >= self.repeat_s
            self._items[key] = replace(old, message=message, last=now, count=old.count + 1,
                                       said=now if due else old.said)
            if not due:
                self.suppressed += 1
            return due

    def resolve(self, key: str) -> bool:
        """The cause is gone (the peer came back, the pin was forgotten); True if it was
        outstanding."""
        with self._lock:
            return self._items.pop(key, None) is not None

    def resolve_prefix(self, prefix: str) -> None:
        """Resolve every warning whose key starts with `prefix`."""
        with self._lock:
            for key in [k for k in self._items if k.startswith(prefix)]:
                del self._items[key]

    def outstanding(self, now: float) -> list[Notice]:
        """Warnings still in force, oldest first."""
        with self._lock:
            return [n for n in self._items.values() if now - n.last <= FORGET_AFTER_S]


class Warnings:
    """Emits each warning once, then at most every REPEAT_S; `notices` keeps them for
    doctor."""

    def __init__(self, emit: Callable[..., None],
                 clock: Callable[[], float] = time.time) -> None:
        self._emit = emit
        self._clock = clock
        self.notices = Notices()

    def warn(self, key: str, event: str, /, code: str, message: str, **fields: Any) -> None:
        """Emit `event` (code, message, fields) unless it was said within REPEAT_S."""
        if self.notices.say(key, code, message, self._clock()):
            self._emit(event, code=code, message=message, **fields)

    def resolve(self, *keys: str) -> None:
        """These causes are gone."""
        for key in keys:
            self.notices.resolve(key)


def refusal_notice(code: str, address: str, reason: str) -> str:
    """What a refused or lost connection means, and what to do about it."""
    from lanchat.text import safe_line

    reason = safe_line(reason)
    if code == "refused":
        if "pinned" in reason:
            return (f"{address} refused us: {reason}. That peer has another key pinned for "
                    "this address (we have a new key, or it met someone else here); ask them "
                    "to /forget the old one, then it reconnects by itself.")
        return f"{address} refused us: {reason}. Run /doctor; it says what is outstanding."
    if "handshake" in reason or "connection lost" in reason or "TLS" in reason:
        return (f"a connection from {address} did not finish the handshake ({reason}). If it "
                "repeats, the node there may have pinned another key for us, or is not "
                "lanchat; /doctor lists it.")
    return f"connection from {address} refused: {reason}"
