"""In-process nodes on 127.0.0.1 for tests: start, collect events, wait for one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node
from tests.contract import violations, wire


class EventLog:
    """Every event a node emitted, with a wait that needs no sleep; each event is checked
    against the headless contract's schema as `run --json` would print it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[Event] = []
        self.contract_violations: list[str] = []

    def __call__(self, event: Event) -> None:
        wrong = violations(wire(event)) if not event.name.startswith("test_") else []
        with self.cond:
            self.contract_violations += wrong
            self.events.append(event)
            self.cond.notify_all()

    def check_contract(self) -> None:
        """Fail if the node emitted an event the schema (docs/HEADLESS.md) does not allow."""
        with self.cond:
            wrong = list(self.contract_violations)
        if wrong:
            raise AssertionError("events break the headless contract (docs/HEADLESS.md, "
                                 "lanchat/headless.schema.json):\n" + "\n".join(wrong[:20]))

    def named(self, name: str) -> list[Event]:
        """Events with this name so far."""
        self.check_contract()
        with self.cond:
            return [e for e in self.events if e.name == name]

    def wait(self, name: str, pred: Callable[[Event], bool] = lambda e: True,
             timeout: float = 10.0, count: int = 1) -> list[Event]:
        """Wait until `count` events named `name` match `pred`; return them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [e for e in self.events if e.name == name and pred(e)]
                if len(found) >= count:
                    self.check_contract()
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = [e.to_dict() for e in self.events[-15:]]
                    raise AssertionError(f"{count} x {name} not seen in {timeout}s "
                                         f"(got {len(found)}); last events: {tail}")
                self.cond.wait(left)


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
