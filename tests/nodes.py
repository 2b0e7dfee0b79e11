"""In-process nodes on 127.0.0.1 for tests: start, collect events, wait for one; the
two-node fixture's peers (`Peer`, `Peers`; the fixtures are in tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lanchat.assembly import plugin_bridge
from lanchat.commands import Context, Output, build_registry, execute
from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node
from lanchat.plugins import Plugins
from lanchat.runtime import Runtime
from tests.contract import violations, wire
from tests.waiting import TAIL, EventStream, wait_until

__all__ = ["EventLog", "Peer", "Peers", "guard_threads_and_loops", "make_node", "wait_until"]

ALICE, BOB = "alice", "bob"  # the two-node fixture's nicks

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


class Peer:
    """One started in-process node on 127.0.0.1 (no discovery): its event log, its command
    context, the `plugins` given bridged as `lanchat run` wires them, and what `extensions`
    (name -> attach function, e.g. ``{"files": lanchat.transfer.attach}``) attached before
    it started, in `ext`. `peers` are addresses it dials."""

    def __init__(self, home: Path, nick: str, *, peers: Sequence[str] = (), port: int = 0,
                 plugins: Plugins | None = None,
                 extensions: Mapping[str, Callable[[Node], Any]] | None = None,
                 **config: Any) -> None:
        self.home, self.nick = home, nick
        self.node = Node(Config(home=home, nick=nick, port=port, interfaces=["127.0.0.1"],
                                peers=list(peers), mdns=False, beacon=False, **config))
        self.log = EventLog()
        self.node.subscribe(self.log)
        self.plugins = plugins or Plugins(None, entry_points=False)
        if plugins is not None:
            self.node.subscribe(plugin_bridge(self.node, plugins))
        self.registry = build_registry(self.plugins)
        self.ctx = Context(self.node, self.registry, self.plugins)
        self.ext = {name: attach(self.node) for name, attach in (extensions or {}).items()}
        self.node.start()

    @property
    def id(self) -> str:
        return self.node.node_id

    @property
    def address(self) -> str:
        """Where another node dials this one."""
        return f"127.0.0.1:{self.node.port}"

    def run(self, line: str) -> Output | None:
        """Run one input line as the shell or `lanchat run` would."""
        return execute(self.ctx, line)

    def meets(self, other: Peer) -> None:
        """Wait until this node and `other` see each other online."""
        self.log.wait("peer_joined", lambda e: e["peer"]["id"] == other.id)
        other.log.wait("peer_joined", lambda e: e["peer"]["id"] == self.id)

    def settle(self) -> None:
        """Wait until every event queued so far has reached every listener (and plugin)."""
        token = object()
        self.node.emit("test_probe", token=token)
        self.log.wait("test_probe", lambda e: e["token"] is token)
        self.plugins.drain()  # hooks run on the plugin thread, after the event thread

    def close(self) -> None:
        """Close the node, then let its plugins' queued calls finish."""
        self.node.close()
        self.plugins.close()


class Peers:
    """Starts peers under one folder (`peers(nick, to=[other], **kw)`, keywords as `Peer`'s)
    and closes them all, last started first; `pair()` is alice and bob, connected."""

    def __init__(self, root: Path, kind: Callable[..., Peer] = Peer) -> None:
        self.root, self.kind = root, kind
        self.made: list[Peer] = []

    def __call__(self, nick: str, *, to: Sequence[Peer] = (), home: Path | None = None,
                 **kw: Any) -> Peer:
        kw.setdefault("peers", [p.address for p in to])
        peer = self.kind(home or self.root / nick, nick, **kw)
        self.made.append(peer)
        return peer

    def pair(self, alice: Mapping[str, Any] | None = None,
             bob: Mapping[str, Any] | None = None) -> tuple[Peer, Peer]:
        """Bob listens, alice dials him (each with its own keywords); both see the other."""
        b = self(BOB, **(bob or {}))
        a = self(ALICE, to=[b], **(alice or {}))
        a.meets(b)
        return a, b

    def close(self) -> None:
        while self.made:
            self.made.pop().close()
