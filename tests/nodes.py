"""In-process nodes on 127.0.0.1 for tests: start, collect events, wait for one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node
from lanchat.runtime import Runtime
from tests.contract import violations, wire
from tests.waiting import TAIL, EventStream, wait_until

__all__ = ["EventLog", "guard_threads_and_loops", "make_node", "wait_until"]

THREAD_END_S = 10.0  # how long a test's lanchat threads may take to end after it
# A test fails if a node's loop was held this long: a session's ping interval, so peers
# would notice. (The runtime logs and counts blocks from 1 s; a loaded machine starves a
# loop for a second or two without any callback at fault.)
TEST_LOOP_BLOCK_S = 5.0


class EventLog(EventStream[Event]):
    """Every event an in-process node emitted (subscribe it), with the tests' one event
    wait (tests/waiting.py); each event is checked against the headless contract's schema
    as `run --json` would print it."""

    def __call__(self, event: Event) -> None:
        self.add(event, violations(wire(event)) if not event.name.startswith("test_") else [])

    def name_of(self, event: Event) -> str:
        return event.name

    def fields_of(self, event: Event) -> Mapping[str, Any]:
        return event.fields

    def describe(self, n_events: int = TAIL) -> str:
        return (f"--- last {n_events} events:\n"
                + "\n".join(str(e.to_dict()) for e in self.snapshot()[-n_events:]))


def guard_threads_and_loops(loops_may_block: bool = False) -> Iterator[None]:
    """Around one test: fail if a lanchat thread it started is still running after
    THREAD_END_S, or (unless `loops_may_block`: a test marked `loop_may_block`, a known
    issue with its reason) if a node loop it ran was blocked (the runtime's watchdog)."""
    before = set(threading.enumerate())
    runtimes = set(Runtime.instances)
    yield
    deadline = time.monotonic() + THREAD_END_S
    left = []
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("lanchat"):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                left.append(thread.name)
    blocked = [r.max_lateness_s for r in set(Runtime.instances) - runtimes
               if r.max_lateness_s > TEST_LOOP_BLOCK_S and not loops_may_block]
    assert not left, f"threads left running after the test: {sorted(left)}"
    assert not blocked, (f"a node's loop was blocked for up to {max(blocked):.1f} s "
                         "(heartbeats and acks waited)")


def make_node(home: Path, nick: str, *, port: int = 0, peers: list[str] | None = None,
              **kw: Any) -> tuple[Node, EventLog]:
    """A started node on 127.0.0.1 with no discovery, and its event log."""
    config = Config(home=home, nick=nick, port=port, interfaces=["127.0.0.1"],
                    peers=peers or [], mdns=False, beacon=False, **kw)
    node = Node(config)
    log = EventLog()
    node.subscribe(log)
    node.start()
    return node, log
