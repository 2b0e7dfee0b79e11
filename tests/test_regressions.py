"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lanchat import protocol as p
from lanchat.events import Event
from lanchat.identity import Identity
from tests.nodes import Peers, make_node, wait_until


def _tls(port: int) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))


def _drain(sock: ssl.SSLSocket) -> None:
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def test_unauthenticated_client_cannot_inject_messages_after_a_refusal(
        tmp_path: Path) -> None:
    """A client that sends `refused` and then `msg` in one write gets nothing stored."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    try:
        sock = _tls(bob.port)
        chat = p.Chat("0190000000000000000000injected", time.time(), "I am your admin", False,
                      "admin")
        sock.sendall(p.encode(p.Refused("never mind")) + p.encode(chat))
        _drain(sock)
        sock.close()
        # The refusal is reported when the session closes, after its whole read was handled.
        bob_log.wait("error", lambda e: e["code"] in ("refused", "session_refused"))
        assert not bob_log.named("message"), [e.to_dict() for e in bob_log.named("message")]
        assert bob.store is not None and bob.store.count_messages() == 0
    finally:
        bob.close()


def test_unauthenticated_client_cannot_inject_messages_after_a_bad_proof(
        tmp_path: Path) -> None:
    """A bad key proof followed by `msg` in the same TLS record stores nothing."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    me = Identity.load_or_create(tmp_path / "mallory")
    try:
        sock = _tls(bob.port)
        chat = p.Chat("0190000000000000000000injected", time.time(), "hi", False, "x")
        sock.sendall(p.encode(p.Auth(me.node_id, "mallory", me.key_b64, me.sign(b"junk"), 1))
                     + p.encode(chat))
        _drain(sock)
        sock.close()
        bob_log.wait("error", lambda e: e["code"] == "session_refused")
        assert not bob_log.named("message")
    finally:
        bob.close()


def test_peer_given_as_id_prefix_does_not_reconnect_forever(tmp_path: Path) -> None:
    """`--peer PREFIX@HOST:PORT` keeps one session instead of redialling without pause."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    ready = []
    orig = bob.session_ready

    def counting(session: Any) -> None:
        ready.append(time.monotonic())
        orig(session)
    bob.session_ready = counting  # type: ignore[method-assign]
    alice, alice_log = make_node(tmp_path / "alice", "alice",
                                 peers=[f"{bob.node_id[:10]}@127.0.0.1:{bob.port}"])
    try:
        alice_log.wait("peer_joined")
        time.sleep(2.0)  # a window to count reconnects in, not a wait for a condition
        assert len(ready) <= 2, f"{len(ready)} sessions in ~2 s"
    finally:
        alice.close()
        bob.close()


@pytest.mark.loop_may_block(
    "a flood of 24,000 messages holds the loop for seconds on a loaded machine (known)")
def test_a_throttled_session_is_not_killed_as_silent(peers: Peers,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A session whose reading bob paused (his listener lags) is not declared dead."""
    monkeypatch.setenv("LANCHAT_HEARTBEAT_S", "0.3")
    # Dead after 2 s, not 1: the flood itself may hold a loaded machine's loops for a
    # second (no heartbeat goes out meanwhile), which is not the silence tested here.
    monkeypatch.setenv("LANCHAT_DEAD_AFTER_S", "2.0")
    b = peers("bob")
    bob, bob_log = b.node, b.log
    gate = threading.Event()

    def stuck(event: Event) -> None:
        if event.name == "message":
            gate.wait(30)
    bob.subscribe(stuck)
    a = peers("alice", to=[b])
    alice = a.node
    n = 24_000
    try:
        a.meets(b)
        for i in range(n):
            alice.send("bob", f"m{i}")
        wait_until(lambda: bob.counters.get("throttled", 0) > 0, "setup: bob throttled", 20)
        time.sleep(5.0)  # two and a half times dead_after, with reading paused
        gate.set()
        bob_log.wait("message", count=n, timeout=60)
        left = bob_log.named("peer_left")
        assert not left, [e["reason"] for e in left]
    finally:
        gate.set()


class _FreezableProxy:
    """A TCP relay whose existing connections can be frozen: bytes swallowed, sockets kept
    open (a peer that vanished without a RST, e.g. power loss or Wi-Fi gone)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen = False
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self.socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen:
                    dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()


@contextmanager
def stale_session(tmp_path: Path) -> Iterator[tuple[str, Any, Any, Any]]:
    """"low" holds a session to "high" that went half-open (the line froze, high's bye never
    arrived); high comes back on the same home. Yields (low's id, low's log, high again,
    high's new log)."""
    ids = {}
    for name in ("a", "b"):
        ids[name] = Identity.load_or_create(tmp_path / name).node_id
    low, high = sorted(ids, key=ids.get)  # type: ignore[arg-type]
    liveness = {"heartbeat_s": 1.0, "dead_after_s": 8.0}
    hi_node, _ = make_node(tmp_path / high, "high", **liveness)
    proxy = _FreezableProxy(("127.0.0.1", hi_node.port))
    lo_node, lo_log = make_node(tmp_path / low, "low", peers=[f"127.0.0.1:{proxy.port}"],
                                **liveness)
    hi2 = None
    try:
        lo_log.wait("peer_joined")
        # a message makes each keep the other across restarts (a bare session would not)
        hello = lo_node.send(ids[high], "hello")
        lo_log.wait("delivered", lambda e: e["id"] == hello)
        proxy.frozen = True
        hi_node.close()  # its bye never reaches low: low's session is now half-open
        hi2, hi2_log = make_node(tmp_path / high, "high", peers=[f"127.0.0.1:{lo_node.port}"],
                                 **liveness)
        yield ids[low], lo_log, hi2, hi2_log
    finally:
        if hi2 is not None:
            hi2.close()
        lo_node.close()
        proxy.close()


def test_restarted_peer_is_not_refused_while_a_stale_session_lingers(
        tmp_path: Path) -> None:
    """A peer back after a silent drop is taken at once, not refused as a duplicate."""
    with stale_session(tmp_path) as (low_id, lo_log, hi2, _):
        msg = hi2.send(low_id, "back again")
        lo_log.wait("message", lambda e: e["id"] == msg, timeout=3.0)


def test_text_from_peers_reaches_the_log_escaped(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A peer's refusal reason and nick reach the log with escapes made visible."""
    caplog.set_level(logging.INFO)
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    try:
        sock = _tls(bob.port)
        sock.sendall(p.encode(p.Refused("\x1b[2J\x1b]0;pwned\x07 gotcha")))
        _drain(sock)
        sock.close()
        bob_log.wait("error", lambda e: e["code"] == "refused")
        raw = [r.getMessage() for r in caplog.records if "\x1b" in r.getMessage()]
        assert not raw, raw
    finally:
        bob.close()


def test_acks_lost_to_a_store_failure_are_not_lost_for_good(peers: Peers) -> None:
    """Acks in a group commit that failed are kept and applied once the disk works."""
    a, b = peers.pair()
    alice, alice_log, bob_log = a.node, a.log, b.log
    assert alice.store is not None
    real = alice.store.commit_batch
    failed = []

    def flaky(incoming: Any, outgoing: Any, acked: Any = (), before_commit: Any = None) -> Any:
        if acked and not failed:
            failed.append(True)
            raise OSError("disk I/O error (injected)")
        return real(incoming, outgoing, acked, before_commit)
    alice.store.commit_batch = flaky  # type: ignore[method-assign]
    msg = alice.send("bob", "hello")
    bob_log.wait("message", lambda e: e["id"] == msg)
    alice_log.wait("error", lambda e: e["code"] == "store_failed")
    alice_log.wait("delivered", lambda e: e["id"] == msg, timeout=5)


def test_a_session_refused_as_duplicate_is_not_redialled_in_a_tight_loop(
        tmp_path: Path) -> None:
    """A session closed right after it was ready is redialled with backoff."""
    with stale_session(tmp_path) as (low_id, _, hi2, hi2_log):
        hi2.send(low_id, "queued, so a dialer by id runs too")
        time.sleep(2.0)  # a window to count reconnects in, not a wait for a condition
        flaps = len(hi2_log.named("peer_left"))
        assert flaps <= 10, f"{flaps} peer_left events in 2 s"


def test_a_bad_peer_option_is_a_usage_error(tmp_path: Path) -> None:
    """A malformed `--peer` is a usage error: exit code 2."""
    from lanchat.cli import main
    code = main(["send", "--home", str(tmp_path / "h"), "--no-mdns", "--no-beacon",
                 "--interface", "127.0.0.1", "--port", "0", "--peer", "127.0.0.1:notaport",
                 "--to", "bob", "--wait", "0.5", "hi"])
    assert code == 2


def test_a_multi_line_message_cannot_forge_lines_in_text_mode() -> None:
    """In text mode a multi-line message cannot print a line that looks like another sender's."""
    from lanchat.headless import describe
    forged = "hi\n<admin> please run /trust mallory\n-- admin [1] is here"
    line = describe(Event.make("message", id="x", **{"from": {"id": "m", "nick": "mallory"}},
                               to="direct", text=forged))
    assert line is not None
    lines = line.split("\n")
    assert all(not ln.startswith(("<", "-- ", "!! ", "* ")) for ln in lines[1:]), lines


def test_close_does_not_wait_for_a_dial_whose_cancel_was_dropped(tmp_path: Path) -> None:
    """Python 3.11's wait_for can return a connect that lands together with the cancel and
    drop the cancel. The dial loop then waited on its new session's close, which the node's
    close only reached after the dial loops ended: close hung for CALL_TIMEOUT_S and left
    the file threads running (seen as a teardown error in the transfer tests)."""
    import asyncio

    node, _ = make_node(tmp_path / "a", "a")
    dialer = node._parts.dialer  # type: ignore[union-attr]
    dialing = threading.Event()
    never_closes: Any = None

    async def dial_dropping_the_cancel(key: str) -> Any:
        nonlocal never_closes
        never_closes = SimpleSession(asyncio.get_running_loop().create_future())
        dialing.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # what wait_for does when the connection is made as the cancel comes
        return never_closes

    dialer._dial_once = dial_dropping_the_cancel
    dialer._wanted = lambda key: key == "somebody"
    node.call(lambda: dialer.ensure("somebody"))
    assert dialing.wait(5)
    closing = threading.Thread(target=node.close, name="test-close")
    closing.start()
    closing.join(CLOSE_LIMIT_S)
    assert not closing.is_alive(), "close waited on the dial loop"


CLOSE_LIMIT_S = 8.0  # below CALL_TIMEOUT_S (10 s): a hung close waits all of it


class SimpleSession:
    def __init__(self, closed: Any) -> None:
        self.closed = closed


def _slow_closer(tmp_path: Path) -> tuple[Any, Path, Path]:
    """`lanchat run --json` whose plugin's shutdown hook waits (up to 20 s) for a file,
    closing after its input ended; returns the process, the file the hook waits for and
    the one it writes once done."""
    import json
    import subprocess
    import sys

    home = tmp_path / "home"
    (home / "plugins").mkdir(parents=True)
    closing, go, done = tmp_path / "closing", tmp_path / "go", tmp_path / "done"
    (home / "plugins" / "slow_close.py").write_text(
        "import pathlib, time\n"
        "from lanchat.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def lanchat_shutdown(node):\n"
        f"    pathlib.Path({str(closing)!r}).touch()\n"
        "    deadline = time.monotonic() + 20\n"
        f"    while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        f"    pathlib.Path({str(done)!r}).touch()\n", "utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lanchat", "run", "--json", "--interface", "127.0.0.1",
         "--no-mdns", "--no-beacon", "--port", "0", "--home", str(home), "--nick", "closer"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["event"] == "ready":
            break
    proc.stdin.close()  # end of input: the node closes
    proc.stdin = None
    wait_until(closing.exists, "the plugins' shutdown hook to start", timeout=30)
    return proc, go, done


def _signalled(proc: Any, *signals: int, then: Callable[[], None] = lambda: None) -> str:
    """Send `proc` these signals, then run `then`; return its stderr once it exits (it is
    killed if it does not within 60 s)."""
    import os

    try:
        for sig in signals:
            os.kill(proc.pid, sig)
        then()
        return str(proc.communicate(timeout=60)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_sigterm_while_the_node_closes_does_not_cut_the_close_short(tmp_path: Path) -> None:
    """`lanchat run` closing after its input ended, then SIGTERM (a supervisor's stop):
    the close goes on to the end (plugins' shutdown, exit 0), no traceback (the signal
    raised KeyboardInterrupt inside the close and skipped the rest)."""
    import signal

    proc, go, done = _slow_closer(tmp_path)
    err = _signalled(proc, signal.SIGTERM, then=go.touch)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert done.exists()


def test_a_second_signal_while_the_node_closes_ends_it_at_once(tmp_path: Path) -> None:
    """A close that hangs (a plugin's shutdown hook that does not return) still yields to
    a second Ctrl-C or SIGTERM: exit 130 at once, no traceback."""
    import signal

    proc, _, _ = _slow_closer(tmp_path)
    err = _signalled(proc, signal.SIGTERM, signal.SIGINT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
