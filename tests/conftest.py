"""Shared fixtures: the namespace lab (tests/lab.py) and in-process peers (tests/nodes.py)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The nodes this run starts (in-process and in the lab) keep their caches (the look-alike
# table, lanchat/confusables.py) in a folder of the run's own, not the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="lanchat-tests-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import lab as _lab  # noqa: E402
from lab import Lab  # noqa: E402
from tests.nodes import Peer, Peers, guard_threads_and_loops  # noqa: E402

LAB_FIXTURES = {"lab_factory", "lab2", "lab3", "lab5"}


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM / SIGHUP end the session like Ctrl-C does: fixtures still tear labs down
    pytest.exit(f"terminated by {signal.Signals(signum).name}", returncode=128 + signum)


def pytest_configure(config: pytest.Config) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _terminate)
        except (ValueError, OSError):  # not the main thread
            pass


def pytest_sessionstart(session: pytest.Session) -> None:
    _lab.sweep_stale_namespaces()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _lab.cleanup_all_labs()
    _lab.sweep_stale_namespaces()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture(autouse=True)
def no_leaked_threads_or_blocked_loops(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a lanchat thread running (a node or plugin manager not
    closed) or whose nodes' loop watchdog saw the loop blocked (lanchat/runtime.py), as
    python-zeroconf's conftest checks its threads."""
    marked = request.node.get_closest_marker("loop_may_block") is not None
    yield from guard_threads_and_loops(loops_may_block=marked)


# The suite's floods (100,000 messages, many offers) measure delivery and backpressure
# between peers that have not verified each other; a stranger's default budget would slow
# them to a crawl. Tests of the budget itself (test_limits.py, test_trust_lab.py) set the
# limits they test. Lab nodes inherit the environment.
LIFTED_LIMITS = {"LANCHAT_LIMIT_STRANGER_MSGS_PER_S": "1e9",
                 "LANCHAT_LIMIT_STRANGER_MSG_BURST": "1e9",
                 "LANCHAT_LIMIT_STRANGER_OFFERS_PER_MIN": "1e9"}


@pytest.fixture(autouse=True)
def floods_are_not_stranger_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the stranger budgets unless a test sets its own."""
    for name, value in LIFTED_LIMITS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def lab_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Lab]]:
    """``lab_factory(n, **kw)`` builds a Lab; every lab is torn down at test end.

    On failure, the recent events and stderr of every node are printed.
    """
    labs: list[Lab] = []

    def make(n: int = 2, **kw: Any) -> Lab:
        kw.setdefault("base_dir", tmp_path / f"lab{len(labs)}")
        lab = Lab(n, **kw)
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        if _failed(request):
            for lab in labs:
                for node in lab.nodes:
                    print(f"\n===== {lab.prefix} {node.host.name} {node.nick}\n"
                          f"{node.describe()}")
        for lab in labs:
            lab.close()
    # every event any node wrote, checked against the headless contract's schema
    for lab in labs:
        for node in lab.nodes:
            node.check_contract()


@pytest.fixture
def lab2(lab_factory: Callable[..., Lab]) -> Generator[Lab, None, None]:
    yield lab_factory(2)


@pytest.fixture
def lab3(lab_factory: Callable[..., Lab]) -> Generator[Lab, None, None]:
    yield lab_factory(3)


@pytest.fixture
def lab5(lab_factory: Callable[..., Lab]) -> Generator[Lab, None, None]:
    yield lab_factory(5)


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    """``peers(nick, to=[other], **kw)`` starts an in-process node (tests/nodes.py `Peer`:
    config keywords, ``plugins=``, ``extensions=``); ``peers.pair(alice={...}, bob={...})``
    is alice and bob, connected. All are closed at the end."""
    made = Peers(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pair(peers: Peers) -> tuple[Peer, Peer]:
    """Alice and bob, in-process on 127.0.0.1, connected (each has seen the other join)."""
    return peers.pair()
