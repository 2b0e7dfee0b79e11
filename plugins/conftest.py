"""Shared fixtures for the first-party plugins' tests: plugin sources on sys.path, and
in-process nodes on 127.0.0.1 wired to a plugin manager exactly as `lanchat run` wires them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in [ROOT, *sorted(HERE.glob("*/src"))]:
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from lanchat.assembly import plugin_bridge  # noqa: E402
from lanchat.commands import (  # noqa: E402
    CommandRegistry,
    Context,
    Output,
    build_registry,
    execute,
)
from lanchat.config import Config  # noqa: E402
from lanchat.node import Node  # noqa: E402
from lanchat.plugins import Plugins  # noqa: E402
from tests.nodes import EventLog, guard_threads_and_loops  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaked_threads_or_blocked_loops(request: pytest.FixtureRequest) -> Iterator[None]:
    """As in tests/conftest.py: no lanchat thread outlives a test, no loop is blocked."""
    marked = request.node.get_closest_marker("loop_may_block") is not None
    yield from guard_threads_and_loops(loops_may_block=marked)


@dataclass
class Plugged:
    """A started node with its event log, plugin manager, commands and command context."""

    node: Node
    log: EventLog
    plugins: Plugins
    registry: CommandRegistry
    ctx: Context

    def run(self, line: str) -> Output | None:
        """Run one input line as the shell or `lanchat run` would."""
        return execute(self.ctx, line)

    def settle(self) -> None:
        """Wait until every event queued so far has reached every listener (and plugin)."""
        token = object()
        self.node.emit("test_probe", token=token)
        self.log.wait("test_probe", lambda e: e["token"] is token)
        self.plugins.drain()  # hooks run on the plugin thread, after the event thread

    def meets(self, other: Plugged) -> None:
        """Wait until this node and `other` see each other online."""
        self.log.wait("peer_joined", lambda e: e["peer"]["id"] == other.node.node_id)
        other.log.wait("peer_joined", lambda e: e["peer"]["id"] == self.node.node_id)


@pytest.fixture
def plugged(tmp_path: Path) -> Iterator[Callable[..., Plugged]]:
    """`plugged(nick, *plugins, peers=[...])` starts a node with those plugins; all close."""
    made: list[Plugged] = []

    def make(nick: str, *extra: object, peers: list[Plugged] | None = None,
             **kw: Any) -> Plugged:
        config = Config(home=tmp_path / nick, nick=nick, port=0, interfaces=["127.0.0.1"],
                        peers=[f"127.0.0.1:{p.node.port}" for p in peers or []],
                        mdns=False, beacon=False, **kw)
        plugins = Plugins(config.home, entry_points=False, extra=extra)
        registry = build_registry(plugins)
        node = Node(config)
        log = EventLog()
        node.subscribe(log)
        node.subscribe(plugin_bridge(node, plugins))
        node.start()
        item = Plugged(node, log, plugins, registry, Context(node, registry, plugins))
        made.append(item)
        return item

    try:
        yield make
    finally:
        for item in made:
            item.plugins.call("lanchat_shutdown", node=item.node)
            item.node.close()
            item.plugins.close()

