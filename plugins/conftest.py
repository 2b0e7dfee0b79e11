"""Shared fixtures for the first-party plugins' tests: plugin sources on sys.path, and
in-process nodes on 127.0.0.1 wired to a plugin manager exactly as `lanchat run` wires them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in [ROOT, *sorted(HERE.glob("*/src"))]:
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from lanchat.plugins import Plugins  # noqa: E402
from tests.nodes import Peer, Peers, guard_threads_and_loops  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaked_threads_or_blocked_loops(request: pytest.FixtureRequest) -> Iterator[None]:
    """As in tests/conftest.py: no lanchat thread outlives a test, no loop is blocked."""
    marked = request.node.get_closest_marker("loop_may_block") is not None
    yield from guard_threads_and_loops(loops_may_block=marked)


@pytest.fixture
def plugged(tmp_path: Path) -> Iterator[Callable[..., Peer]]:
    """`plugged(nick, *plugins, peers=[...])` starts a node with those plugins (the tests'
    one in-process peer, tests/nodes.py `Peer`); at the end each gets lanchat_shutdown and
    all close."""
    made = Peers(tmp_path)

    def make(nick: str, *extra: object, peers: Sequence[Peer] = (), **kw: Any) -> Peer:
        plugins = Plugins(tmp_path / nick, entry_points=False, extra=extra)
        return made(nick, to=peers, plugins=plugins, **kw)

    try:
        yield make
    finally:
        for item in made.made:
            item.plugins.call("lanchat_shutdown", node=item.node)
        made.close()

