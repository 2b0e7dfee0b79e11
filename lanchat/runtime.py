"""A node's two threads: the asyncio loop that owns every socket and timer, and the event
thread that hands events to listeners in order.

`Runtime` owns both threads, the event queue, the listeners and the counters; it knows
nothing of sessions or messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue
import signal
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from lanchat.events import Event

log = logging.getLogger("lanchat.node")
T = TypeVar("T")

CALL_TIMEOUT_S = 10.0  # longest a caller waits for the loop to run its call
WATCH_EVERY_S = 0.25  # the loop watchdog's timer
LOOP_BLOCKED_S = 1.0  # a watchdog timer this late means something blocked the loop


# Set by the console entry: this process runs one long-lived node (see `freeze_started`).
_one_node_process: list[bool] = [False]


def one_node_process() -> None:
    """Say that this process runs one node for its whole life (the `lanchat` command)."""
    _one_node_process[0] = True


def freeze_started() -> None:
    """Once the node has started, in a process that runs one node (`one_node_process`):
    leave what is alive now (modules, classes, the node's parts) out of the cyclic
    collector's walks from now on (`gc.freeze`). A full collection during a flood then
    walks only the messages in flight: its pauses, which hold every thread, fell from
    50-100 ms to 10-24 ms in a 30,000-message flood (issue 15). Not where tests or an
    embedding program make and drop nodes: what is frozen is never collected."""
    if _one_node_process[0]:
        gc.freeze()


@contextlib.contextmanager
def closing() -> Iterator[None]:
    """Around a face's close of its node: the first Ctrl-C or SIGTERM that comes meanwhile
    is held off (a KeyboardInterrupt raised inside the close skipped the byes, the plugins'
    shutdown and the last writes, with a traceback; it is closing already); a second one
    ends the close at once (KeyboardInterrupt: a plugin's shutdown hook that hangs). Main
    thread only; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold_once(signum: int, frame: object) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(signum)

    saved: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, hold_once)
        yield
    finally:
        for sig, handler in saved.items():  # None: not set from Python (an embedding)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


class Runtime:
    """The loop thread (`lanchat-net`) and the event thread (`lanchat-events`).

    A watchdog timer on the loop counts `loop_blocked` (and logs) whenever it runs more
    than `LOOP_BLOCKED_S` late: some callback held the loop, and with it every session's
    heartbeat and ack. The tests fail a test that makes it fire (tests/conftest.py)."""

    instances: weakref.WeakSet[Runtime] = weakref.WeakSet()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.counters: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run_loop, name="lanchat-net", daemon=True)
        self._events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._event_thread = threading.Thread(target=self._run_events, name="lanchat-events",
                                              daemon=True)
        self._listeners: list[Callable[[Event], None]] = []
        self._idle: list[Callable[[], None]] = []
        self._drained: tuple[int, Callable[[], None]] | None = None
        self._stopped = False
        self.max_lateness_s = 0.0
        Runtime.instances.add(self)

    # -- threads -------------------------------------------------------------------------

    def start(self) -> None:
        """Start both threads."""
        self._thread.start()
        self._event_thread.start()

    @property
    def running(self) -> bool:
        """True while the loop thread runs."""
        return self._thread.is_alive()

    def on_loop(self) -> bool:
        """True when called on the loop thread."""
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        """Stop the loop, then let the event thread deliver what is queued and end."""
        self._stopped = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
        if self._event_thread.is_alive():
            self._events.put(None)
            if threading.current_thread() is not self._event_thread:
                self._event_thread.join(CALL_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_exception)
        self.loop.call_soon(self._watch, self.loop.time())
        self.loop.run_forever()

    def _watch(self, due: float) -> None:
        late = self.loop.time() - due
        self.max_lateness_s = max(self.max_lateness_s, late)
        if late > LOOP_BLOCKED_S:
            self.count("loop_blocked")
            log.warning("the loop was blocked for %.1f s (heartbeats and acks waited)", late)
        next_due = self.loop.time() + WATCH_EVERY_S
        self.loop.call_at(next_due, self._watch, next_due)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        exc = ctx.get("exception")
        self.count("loop_errors")
        if isinstance(exc, ConnectionError | TimeoutError | OSError):
            log.info("network: %s", ctx.get("message"))
        else:
            log.error("loop error: %s", ctx.get("message"), exc_info=exc)

    def _run_events(self) -> None:
        closing = False
        while True:
            if closing:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    return
            else:
                event = self._events.get()
            if event is None:
                closing = True
                continue
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - a listener never stops the others
                    log.exception("event listener failed on %s", event.name)
            drained = self._drained
            if drained is not None and self._events.qsize() < drained[0]:
                self._drained = None
                if not self._stopped:
                    self.loop.call_soon_threadsafe(drained[1])
            if self._events.empty():
                for idle in list(self._idle):
                    try:
                        idle()
                    except Exception:  # noqa: BLE001
                        log.exception("idle hook failed")

    # -- calls onto the loop (any thread) ---------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine on the loop; the caller may wait on the returned future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the loop thread and return its result."""
        if self.on_loop():
            return fn(*args)

        async def run() -> T:
            return fn(*args)

        return self.submit(run()).result(CALL_TIMEOUT_S)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the loop thread soon; returns at once."""
        self.loop.call_soon_threadsafe(fn, *args)

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for every event, on the event thread, in order."""
        self._listeners.append(listener)

    def on_idle(self, hook: Callable[[], None]) -> None:
        """Call `hook()` on the event thread whenever the event queue runs empty."""
        self._idle.append(hook)

    def emit(self, name: str, /, **fields: Any) -> None:
        """Queue an event for the listeners (any thread)."""
        self._events.put(Event.make(name, **fields))

    def backlog(self) -> int:
        """Events queued and not yet taken by the listeners."""
        return self._events.qsize()

    def when_drained(self, below: int, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop once the backlog falls under `below` (loop thread)."""
        self._drained = (below, callback)

    def count(self, key: str, n: int = 1) -> None:
        """Add to a counter (loop thread, or a thread that owns the key)."""
        self.counters[key] = self.counters.get(key, 0) + n
