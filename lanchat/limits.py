"""Bounds on what peers may make this node do: send times, and what a stranger (a key we
have not verified or trusted) may send, store and bring.

A stranger is bounded in messages per second and bytes stored per day, in file offers per
minute; an address in new identities per minute; every source together by the size of the
peer table; and everyone by the size of the store. The defaults are far above what people
type (a fast typist sends well under one message a second and a few hundred kB a day),
so only floods meet them. Over a message budget the receiver answers `slow_down`: an
honest sender keeps the messages in its outbox and sends them again later.

`Guard` decides; the node wires it to sessions. No I/O here except the store questions
the guard is given; callers pass `now`.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Protocol, cast

from lanchat.protocol import MAX_SLOW_DOWN_S, Message

# A peer's send time is believed within this window around our clock; outside it (a
# forged or broken clock, 1e300) the message gets the time it arrived. Messages may wait
# in an outbox for weeks, so the past reaches far; clocks run ahead by time-zone mistakes.
SEND_TIME_PAST_S = 366 * 24 * 3600.0
SEND_TIME_FUTURE_S = 24 * 3600.0

DAY_S = 24 * 3600.0
MIN_SLOW_DOWN_S = 1.0
SLOW_DOWN_EVERY_S = 1.0  # at most one slow_down frame per peer per second
IGNORED_BYTES_LIMIT = 4 << 20  # a stranger that sends this much after slow_down is closed
MAX_TRACKED = 4096  # strangers and addresses with a budget in memory; the oldest go first
TRUSTED = ("verified", "trusted")
ENV_PREFIX = "LANCHAT_LIMIT_"  # e.g. LANCHAT_LIMIT_STRANGER_MSGS_PER_S=50


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def accepted_time(sent: float, now: float) -> float | None:
    """`sent` if it is a sane send time, else None (use the receive time)."""
    if math.isfinite(sent) and now - SEND_TIME_PAST_S <= sent <= now + SEND_TIME_FUTURE_S:
        return sent
    return None


@dataclass(frozen=True)
class Limits:
    """The bounds in force; each can be set by LANCHAT_LIMIT_<NAME> (tests, big rooms)."""

    stranger_msgs_per_s: float = 5.0
    stranger_msg_burst: float = 100.0
    stranger_bytes_per_day: float = 16 * 1024 * 1024
    stranger_offers_per_min: float = 6.0
    new_ids_per_address_per_min: float = 10.0
    max_peers: float = 2048
    max_store_bytes: float = 2 * 1024**3

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, with any LANCHAT_LIMIT_* override that parses as a number."""
        values: dict[str, float] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            if value > 0 and math.isfinite(value):
                values[f.name] = value
        return cls(**values)


class Bucket:
    """A token bucket: `rate` per second, at most `burst` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def _fill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take `n` tokens if there are; True if taken."""
        self._fill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def available(self, now: float) -> int:
        """Whole tokens there are now."""
        self._fill(now)
        return int(self.tokens)

    def wait(self, now: float, n: float) -> float:
        """Seconds until `n` tokens are there."""
        self._fill(now)
        return max(0.0, (min(n, self.burst) - self.tokens) / self.rate)


class Durable(Protocol):
    """A message that is stored and acked by id: a chat, a room post."""

    msg_id: str
    text: str


def _durable(messages: Sequence[Message]) -> Sequence[Durable]:
    return cast(Sequence[Durable], messages)


class _Budget:
    """What one stranger has used."""

    __slots__ = ("day_bytes", "day_start", "last_slow_down", "messages", "offers",
                 "slowed_bytes", "resume_at")

    def __init__(self, limits: Limits, now: float, stored_today: int) -> None:
        self.messages = Bucket(limits.stranger_msgs_per_s, limits.stranger_msg_burst, now)
        self.offers = Bucket(limits.stranger_offers_per_min / 60.0,
                             limits.stranger_offers_per_min, now)
        self.day_start = now
        self.day_bytes = stored_today
        self.last_slow_down = -math.inf
        self.slowed_bytes = 0
        # The first message deferred: nothing after it is stored before it comes again (the
        # sender resends its outbox in order), or a later one could overtake it.
        self.resume_at: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What to do with a batch of chats from one peer."""

    accepted: int  # `accepted` chats from index `start` may be stored
    retry_after: float | None = None  # answer slow_down with this (None: no answer now)
    close: bool = False  # the peer goes on flooding after slow_down: close the session
    reason: str = ""
    start: int = 0


class Guard:
    """Budgets of strangers and of addresses; the store's size bound."""

    def __init__(self, limits: Limits, *, trust_of: Callable[[str], str | None],
                 stored_today: Callable[[str, float], int],
                 store_size: Callable[[], int]) -> None:
        self.limits = limits
        self._trust_of = trust_of
        self._stored_today = stored_today
        self._store_size = store_size
        self._budgets: OrderedDict[str, _Budget] = OrderedDict()
        self._addresses: OrderedDict[str, Bucket] = OrderedDict()
        self._size = 0
        self._size_at = -math.inf

    def stranger(self, peer_id: str) -> bool:
        """True unless the peer is verified or trusted."""
        return self._trust_of(peer_id) not in TRUSTED

    def _budget(self, peer_id: str, now: float) -> _Budget:
        budget = self._budgets.get(peer_id)
        if budget is None:
            budget = _Budget(self.limits, now, self._stored_today(peer_id, now - DAY_S))
            self._budgets[peer_id] = budget
            if len(self._budgets) > MAX_TRACKED:
                self._budgets.popitem(last=False)
        else:
            self._budgets.move_to_end(peer_id)
        if now - budget.day_start >= DAY_S:
            budget.day_start, budget.day_bytes = now, 0
        return budget

    def store_full(self, now: float) -> bool:
        """True while the store is at its size bound (its size is read at most once a s)."""
        if now - self._size_at >= 1.0:
            self._size, self._size_at = self._store_size(), now
        return self._size >= self.limits.max_store_bytes

    def chats(self, peer_id: str, frames: Sequence[Message], now: float) -> Verdict:
        """How many of these chats (or room posts) to store; the rest wait in the sender's
        outbox."""
        chats = _durable(frames)
        if self.store_full(now):
            return Verdict(0, self._slow(peer_id, now, 60.0), reason="the store is full")
        room = self.limits.max_store_bytes - self._size
        if not self.stranger(peer_id):
            total = sum(len(c.text) for c in chats)
            if total <= room:
                self._size += total  # until the next look at the disk
                return Verdict(len(chats))
            ok = 0
            for chat in chats:  # up to the bound; the rest waits (the store stays full)
                room -= len(chat.text)
                if room < 0:
                    break
                self._size += len(chat.text)
                ok += 1
            self._size = max(self._size, int(self.limits.max_store_bytes))  # full till a look
            return Verdict(ok, self._slow(peer_id, now, 60.0), reason="the store is full")
        budget = self._budget(peer_id, now)
        start = 0
        if budget.resume_at is not None:
            start = next((i for i, c in enumerate(chats) if c.msg_id == budget.resume_at),
                         len(chats))
            if start == len(chats):  # still the tail sent before our slow_down arrived
                return self._defer(peer_id, budget, chats, 0, now, None, "")
            budget.resume_at = None
            chats = chats[start:]
        day_left = self.limits.stranger_bytes_per_day - budget.day_bytes
        store_cut = room < day_left
        day_left = min(day_left, room)
        ok = 0
        took = min(len(chats), budget.messages.available(now))
        for chat in chats[:took]:
            size = len(chat.text) if chat.text.isascii() else len(chat.text.encode())
            if size > day_left:
                break
            day_left -= size
            budget.day_bytes += size
            ok += 1
        budget.messages.take(now, ok)
        self._size += sum(len(c.text) for c in chats[:ok])
        if ok == len(chats):
            budget.slowed_bytes = 0
            return Verdict(ok, start=start)
        if ok == took and took < len(chats):  # out of messages for now
            wait = budget.messages.wait(now, self.limits.stranger_msg_burst / 2)
            reason = "too many messages from a stranger"
        elif store_cut:  # the store reached its bound
            wait, reason = 60.0, "the store is full"
            self._size = max(self._size, int(self.limits.max_store_bytes))
        else:  # out of bytes for today
            wait = budget.day_start + DAY_S - now
            reason = "a stranger's daily share of the store is used up"
        budget.resume_at = chats[ok].msg_id
        return self._defer(peer_id, budget, chats, ok, now, wait, reason, start)

    def _defer(self, peer_id: str, budget: _Budget, chats: Sequence[Durable], ok: int,
               now: float, wait: float | None, reason: str, start: int = 0) -> Verdict:
        """Store the first `ok`, leave the rest in the sender's outbox."""
        budget.slowed_bytes += sum(len(c.text) for c in chats[ok:])
        close = budget.slowed_bytes > IGNORED_BYTES_LIMIT
        if wait is None:  # the tail after a slow_down: repeat it at most once a second
            wait = budget.messages.wait(now, self.limits.stranger_msg_burst / 2)
            reason = "too many messages from a stranger"
        return Verdict(ok, self._slow(peer_id, now, wait), close, reason, start)

    def _slow(self, peer_id: str, now: float, wait: float) -> float | None:
        budget = self._budget(peer_id, now)
        if now - budget.last_slow_down < SLOW_DOWN_EVERY_S:
            return None
        budget.last_slow_down = now
        return min(max(wait, MIN_SLOW_DOWN_S), MAX_SLOW_DOWN_S)

    def offer(self, peer_id: str, now: float) -> bool:
        """True if a stranger may make one more file offer now."""
        if not self.stranger(peer_id):
            return True
        return self._budget(peer_id, now).offers.take(now)

    def new_identity(self, address: str, now: float) -> bool:
        """True if `address` may bring one more key we have never seen. This computer's
        own nodes (loopback) are not counted: whoever runs there can read our home."""
        if _loopback(address):
            return True
        bucket = self._addresses.get(address)
        if bucket is None:
            per_min = self.limits.new_ids_per_address_per_min
            bucket = Bucket(per_min / 60.0, per_min, now)
            self._addresses[address] = bucket
            if len(self._addresses) > MAX_TRACKED:
                self._addresses.popitem(last=False)
        return bucket.take(now)

    def stats(self) -> dict[str, float]:
        """Budgets in memory and the limits, for doctor."""
        return {"strangers_tracked": len(self._budgets),
                "addresses_tracked": len(self._addresses), "store_bytes": self._size,
                **{f.name: getattr(self.limits, f.name) for f in fields(self.limits)}}


def store_full_message(limits: Limits) -> str:
    """What to do when the store is at its bound."""
    mib = limits.max_store_bytes / (1 << 20)
    return (f"the history database is at its size bound ({mib:.0f} MiB): nothing more is "
            "stored, peers are asked to wait. Free space by moving lanchat.db away (a new "
            f"one starts empty) or raise the bound with {ENV_PREFIX}MAX_STORE_BYTES.")
