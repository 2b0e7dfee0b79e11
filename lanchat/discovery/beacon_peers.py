"""What the beacon has heard: per-source rate limits and the last seq of every (node id,
instance, source address), which drops replays and reports a repeated bye once.

Anyone on the link can send beacons with random ids; both tables are bounded (the oldest
entries go) and a source may add new entries only slowly, so a flood cannot grow memory or
drown the real peers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from lanchat.discovery.beacon_wire import BeaconMessage
from lanchat.discovery.sighting import DropReason

# Receive-side bounds, read once per PeerBook (tests may patch them before construction).
MAX_TRACKED = 4096  # (id, instance, source) entries for replay detection; oldest evicted
MAX_SOURCES = 1024  # per-source rate buckets (of each kind); oldest evicted
# Two token buckets per source address. Nodes on one host share a source address, so the
# bucket for all datagrams is generous; the one for datagrams that add a new (id, instance)
# entry is tight, which is what stops a flood of random ids.
SOURCE_RATE_PER_S = 200.0  # datagrams per second a source may send us
SOURCE_BURST = 400.0  # ... and at once
NEW_PEER_RATE_PER_S = 20.0  # new (id, instance) entries per second a source may create
NEW_PEER_BURST = 40.0  # ... and at once


class _RateLimit:
    """Token buckets keyed by source address; only the most recent `max_keys` are kept."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, t]

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket; False if it is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [self._burst, now]
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True


@dataclass(slots=True)
class Heard:
    """One tracked (id, instance, source): the last seq accepted, and whether it said bye."""

    seq: int
    said_bye: bool = False


class PeerBook:
    """The beacon's receive-side state; used on the beacon's loop thread only."""

    def __init__(self) -> None:
        self.max_tracked = MAX_TRACKED
        self._all_limit = _RateLimit(SOURCE_RATE_PER_S, SOURCE_BURST, MAX_SOURCES)
        self._new_limit = _RateLimit(NEW_PEER_RATE_PER_S, NEW_PEER_BURST, MAX_SOURCES)
        self._tracked: OrderedDict[tuple[str, str, str], Heard] = OrderedDict()
        self.evicted = 0

    @property
    def tracked(self) -> int:
        return len(self._tracked)

    @property
    def sources(self) -> int:
        return len(self._all_limit)

    def allow(self, source: str, now: float) -> bool:
        """Take one datagram from `source` out of its rate bucket; False if it is empty."""
        return self._all_limit.allow(source, now)

    def hear(self, msg: BeaconMessage, source: str, now: float) -> tuple[Heard, bool] | DropReason:
        """Record `msg` from `source`: its entry and whether it is new, or why it is dropped
        (a new entry over the source's rate, or a seq not above the last one)."""
        key = (msg.node_id, msg.instance, source)
        entry = self._tracked.get(key)
        if entry is None:
            if not self._new_limit.allow(source, now):
                return DropReason.RATE_LIMITED
            entry = Heard(msg.seq)
            self._tracked[key] = entry
            if len(self._tracked) > self.max_tracked:
                self._tracked.popitem(last=False)
                self.evicted += 1
            return entry, True
        if msg.seq <= entry.seq:
            return DropReason.REPLAY
        entry.seq = msg.seq
        self._tracked.move_to_end(key)
        return entry, False
