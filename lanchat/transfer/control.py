"""The control thread of the transfer extension: one thread, one queue, a tick.

Whatever is queued with `later` runs here in order (control messages from peers, peers
that come and go, the follow-ups of a stream that stopped), then the tick (offer expiry,
resume retries) runs at least every TICK_S. The state that only this thread touches
(offers.OfferControl's deadlines and retries, receiving.ReceivingSide's receivers) needs
no lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TICK_S = 0.5


class ControlThread:
    """Runs queued calls and a periodic tick on one thread; `later` is thread-safe."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def later(self, fn: Callable[[], object]) -> None:
        """Run `fn()` on the control thread (calls queued before `start` wait for it)."""
        self._queue.put(fn)

    def start(self, tick: Callable[[float], None]) -> None:
        """Start the thread; `tick(now)` runs after each call and at least every tick_s."""
        self._thread = threading.Thread(target=self._run, args=(tick,), name="lanchat-files",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ask the thread to end after what is queued and wait up to `timeout` for it."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            if self._thread.is_alive():
                log.warning("the file control thread did not end within %.1f s", timeout)

    def _run(self, tick: Callable[[float], None]) -> None:
        while True:
            try:
                fn = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                fn = _tick_only
            if fn is None:
                return
            try:
                fn()
                tick(time.monotonic())
            except Exception:  # noqa: BLE001 - the control thread never dies
                log.exception("file control failed in %s", getattr(fn, "__qualname__", fn))


def _tick_only() -> None:
    """Stands for "nothing queued: just tick"."""
