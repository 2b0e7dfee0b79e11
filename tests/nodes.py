"""In-process nodes on 127.0.0.1 for tests: start, collect events, wait for one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lanchat.assembly import EventWaiter
from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node
from lanchat.runtime import Runtime
from tests.contract import violations, wire

THREAD_END_S = 10.0  # how long a test's lanchat threads may take to end after it
# A test fails if a node's loop was held this long: a session's ping interval, so peers
# would notice. (The runtime logs and counts blocks from 1 s; a loaded machine starves a
# loop for a second or two without any callback at fault.)
TEST_LOOP_BLOCK_S = 5.0


class EventLog(EventWaiter):
    """Every event a node emitted, with a wait that needs no sleep (the one event waiter,
    lanchat.assembly.EventWaiter, with waits by name for tests); each event is checked
    against the headless contract's schema as `run --json` would print it."""

    def __init__(self) -> None:
        super().__init__()
        self.contract_violations: list[str] = []

    def __call__(self, event: Event) -> None:
        wrong = violations(wire(event)) if not event.name.startswith("test_") else []
        with self.cond:
            self.contract_violations += wrong
        super().__call__(event)

    def check_contract(self) -> None:
        """Fail if the node emitted an event the schema (docs/HEADLESS.md) does not allow."""
        with self.cond:
            wrong = list(self.contract_violations)
        if wrong:
            raise AssertionError("events break the headless contract (docs/HEADLESS.md, "
                                 "lanchat/headless/schema.json):\n" + "\n".join(wrong[:20]))

    def named(self, name: str) -> list[Event]:
        """Events with this name so far."""
        self.check_contract()
        with self.cond:
            return [e for e in self.events if e.name == name]

    def wait(self, name: str, pred: Callable[[Event], bool] = lambda e: True,  # type: ignore[override]
             timeout: float = 10.0, count: int = 1) -> list[Event]:
        """Wait until `count` events named `name` match `pred`; return them."""
        deadline = time.monotonic() + timeout
        found: list[Event] = []

        def enough(event: Event) -> bool:
            if event.name == name and pred(event):
                found.append(event)
            return len(found) >= count

        if EventWaiter.wait(self, enough, deadline) is None:
            with self.cond:
                tail = [e.to_dict() for e in self.events[-15:]]
            raise AssertionError(f"{count} x {name} not seen in {timeout}s "
                                 f"(got {len(found)}); last events: {tail}")
        self.check_contract()
        return found


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `pred` (state with no event to wait on) until true; AssertionError naming
    `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


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
