"""Faults a node survives, in-process on loopback: floods, slow listeners, half-open peers."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from lanchat.events import Event
from lanchat.node import EVENTS_HIGH_WATER
from tests.nodes import Peers, make_node
from tests.proxy import FaultProxy, random_plan


@pytest.mark.loop_may_block(
    "a flood of 100,000 messages holds the loop for seconds on a loaded machine (known)")
def test_a_flood_is_slowed_to_what_the_listener_takes_and_nothing_is_lost(
        peers: Peers) -> None:
    """Alice floods 100,000 messages at bob, whose screen is slow: bob's backlog stays
    bounded (he stops reading), and every message still arrives once, in order."""
    b = peers("bob")
    bob = b.node
    seen: list[str] = []
    done = threading.Event()
    n = 100_000

    def slow_screen(event: Event) -> None:
        if event.name == "message":
            seen.append(event["text"])
            if len(seen) % 200 == 0:
                time.sleep(0.002)
            if len(seen) == n:
                done.set()
    bob.subscribe(slow_screen)
    a = peers("alice", to=[b])
    alice, alice_log = a.node, a.log
    alice_log.wait("peer_joined")
    for i in range(n):
        alice.send("bob", f"flood {i}")
    assert done.wait(120), f"only {len(seen)} of {n} arrived"
    assert seen == [f"flood {i}" for i in range(n)]
    counters = bob.stats()["counters"]
    assert counters["max_event_backlog"] < EVENTS_HIGH_WATER + 20_000
    # Bob still answers at once while alice's flood drains.
    reply = bob.send("alice", "still here")
    alice_log.wait("message", lambda e: e["id"] == reply, timeout=30)


def test_a_thousand_silent_connections_leave_the_node_serving(tmp_path: Path) -> None:
    """1,000 TCP connections that never say a word: bob sheds or times them out and still
    takes alice's messages."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    silent: list[socket.socket] = []
    try:
        for _ in range(1000):
            try:
                silent.append(socket.create_connection(("127.0.0.1", bob.port), timeout=2))
            except OSError:
                break
        assert len(silent) >= 500
        alice, alice_log = make_node(tmp_path / "alice", "alice",
                                     peers=[f"127.0.0.1:{bob.port}"])
        try:
            alice_log.wait("peer_joined", timeout=20)
            msg = alice.send("bob", "through the crowd")
            bob_log.wait("message", lambda e: e["id"] == msg, timeout=20)
        finally:
            alice.close()
        counters = bob.stats()["counters"]
        assert counters.get("handshakes_shed", 0) + counters.get("tls_failed", 0) > 0
    finally:
        for s in silent:
            s.close()
        bob.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_messages_survive_a_proxy_that_drops_holes_delays_and_trickles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Alice reaches bob through a line that breaks in random ways at random points, then
    heals: all 1,500 messages arrive once, in order."""
    monkeypatch.setenv("LANCHAT_HEARTBEAT_S", "0.3")
    monkeypatch.setenv("LANCHAT_DEAD_AFTER_S", "1.2")
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    proxy = FaultProxy(("127.0.0.1", bob.port), random_plan(seed))
    alice, alice_log = make_node(tmp_path / "alice", "alice",
                                 peers=[f"127.0.0.1:{proxy.port}"])
    n = 1500
    try:
        alice_log.wait("peer_joined", timeout=20)
        for i in range(n):
            alice.send("bob", f"m{i}")
            if i % 100 == 0:
                time.sleep(0.02)  # pace the sender so faults land mid-stream
        alice_log.wait("delivered", count=n, timeout=90)
        texts = [r["text"] for r in bob.history("alice", n + 10)]
        assert texts == [f"m{i}" for i in range(n)]
        assert [e["text"] for e in bob_log.named("message")] == texts
        assert proxy.connections >= 2, "the faults forced at least one reconnect"
    finally:
        alice.close()
        proxy.close()
        bob.close()


def test_a_plugin_stuck_in_a_hook_does_not_hold_back_acks(peers: Peers) -> None:
    """Bob's plugin blocks on every message; alice still gets every ack meanwhile."""
    from lanchat.hookspecs import hookimpl
    from lanchat.plugins import Plugins

    release = threading.Event()

    class Stuck:
        @hookimpl
        def lanchat_message_received(self, node: object, message: dict) -> None:
            release.wait(30)

    a, _ = peers.pair(bob={"plugins": Plugins(None, entry_points=False, extra=[Stuck()])})
    try:
        ids = {a.node.send("bob", f"hello {i}") for i in range(3)}
        acks = a.log.wait("delivered", lambda e: e["id"] in ids, count=3, timeout=15)
        assert {e["id"] for e in acks} == ids
        assert not release.is_set()
    finally:
        release.set()
