"""Live updates for the page: every event numbered (field `n`), kept in a bounded ring,
and written to each open WebSocket in batches. A page that reconnects says the last
number it saw and gets what followed; if that fell out of the ring (or the server
restarted) it is told to reload its state instead.

`publish` runs on any thread (the node's event thread, mostly); the writers run on the
node's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

RING_EVENTS = 20_000  # events kept for a page that reconnects (~20 s at 1,000 msg/s)
# ... and at most this many bytes of them: a peer's longest message is ~200 kB as JSON.
RING_BYTES = 64 << 20
BATCH_EVENTS = 2_000  # at most this many events in one WebSocket frame
BATCH_BYTES = 1 << 20  # ... and this many bytes, unless one event alone is bigger
# At most one frame per this long per page: a lone event goes out at once, a flood in
# batches (a browser pays per message it handles, whatever its size).
FRAME_GAP_S = 0.016


class Feed:
    """Numbered events, a replay ring, and the set of pages listening."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ring: int = RING_EVENTS,
                 ring_bytes: int = RING_BYTES) -> None:
        self.loop = loop
        self.epoch = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._ring: deque[tuple[int, str]] = deque()
        self._ring_max = ring
        self._ring_bytes_max = ring_bytes
        self._ring_bytes = 0
        self._seq = 0
        self._wake_pending = False
        self._readers: set[Reader] = set()
        self.counters: dict[str, int] = {"published": 0, "gaps": 0}

    @property
    def seq(self) -> int:
        """The number of the last event published."""
        with self._lock:
            return self._seq

    def publish(self, name: str, fields: dict[str, Any], ts: float) -> int:
        """Number an event, keep it, and wake the writers; any thread. Returns its seq."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            body = {"event": name, "ts": round(ts, 6), **fields, "n": seq}
            line = json.dumps(body, ensure_ascii=True, separators=(",", ":"), default=str)
            self._ring.append((seq, line))
            self._ring_bytes += len(line)
            while len(self._ring) > 1 and (len(self._ring) > self._ring_max
                                           or self._ring_bytes > self._ring_bytes_max):
                self._ring_bytes -= len(self._ring.popleft()[1])
            wake = not self._wake_pending
            self._wake_pending = True
            self.counters["published"] += 1
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed: nobody is listening any more
                pass
        return seq

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        for reader in self._readers:
            reader.wake.set()

    def since(self, last: int) -> list[str] | None:
        """Events after `last`, at most one batch; None if some are no longer kept."""
        with self._lock:
            if last >= self._seq:
                return []
            first = self._ring[0][0] if self._ring else self._seq + 1
            if last + 1 < first:
                return None
            start = last + 1 - first
            end = min(len(self._ring), start + BATCH_EVENTS)
            batch: list[str] = []
            size = 0
            for i in range(start, end):
                line = self._ring[i][1]
                size += len(line)
                if batch and size > BATCH_BYTES:
                    break
                batch.append(line)
            return batch

    def can_resume(self, epoch: str, last: int) -> bool:
        """True if a page that saw event `last` of `epoch` can be brought up to date."""
        if epoch != self.epoch or last < 0 or last > self.seq:
            return False
        return self.since(last) is not None

    def add(self, reader: Reader) -> None:
        """A page starts listening (loop thread)."""
        self._readers.add(reader)
        reader.wake.set()

    def remove(self, reader: Reader) -> None:
        """A page stopped listening (loop thread)."""
        self._readers.discard(reader)

    @property
    def readers(self) -> int:
        """Open WebSockets."""
        return len(self._readers)


class Reader:
    """One page's position in the feed."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.wake = asyncio.Event()

    async def frames(self, feed: Feed) -> Any:
        """Yield WebSocket frames (JSON text) as events arrive; a 'reset' frame, then stop,
        when this page fell further behind than the ring keeps."""
        loop = asyncio.get_running_loop()
        sent_at = 0.0
        while True:
            await self.wake.wait()
            self.wake.clear()
            while True:
                wait = sent_at + FRAME_GAP_S - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                batch = feed.since(self.last)
                if batch is None:
                    feed.counters["gaps"] += 1
                    yield '{"type":"reset","reason":"too far behind"}'
                    return
                if not batch:
                    break
                self.last += len(batch)
                sent_at = loop.time()
                yield '{"type":"events","events":[' + ",".join(batch) + "]}"
