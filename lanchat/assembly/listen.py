"""Listeners every face hangs on a node: a waiter that lets another thread wait for an
event, and the JSON-lines printer of `run --json`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from lanchat.events import Event
from lanchat.node import Node


class EventWaiter:
    """Collects events so another thread can wait for one with a deadline."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, pred: Callable[[Event], bool], deadline: float,
             start: int = 0) -> Event | None:
        """Return the first event from index `start` matching `pred`, or None at the deadline."""
        seen = start
        with self.cond:
            while True:
                for event in self.events[seen:]:
                    if pred(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class JsonPrinter:
    """One JSON object per line; flushed whenever the event queue runs empty."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, event: Event) -> None:
        """Write one event."""
        self.out.write(event.to_json() + "\n")

    def flush(self) -> None:
        """Flush the stream."""
        try:
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass


def print_json_events(node: Node, out: TextIO) -> JsonPrinter:
    """Write every event of `node` to `out` as `run --json` does (flushed when idle)."""
    printer = JsonPrinter(out)
    node.subscribe(printer.event)
    node.on_idle(printer.flush)
    return printer
