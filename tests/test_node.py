"""Two in-process nodes on loopback: sessions, acks, store and forward, refusals."""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path

import pytest

from lanchat.node import Node, NodeError
from tests.nodes import EventLog, Peer, make_node, wait_until


@pytest.fixture
def alice_bob(pair: tuple[Peer, Peer]) -> tuple[Node, EventLog, Node, EventLog]:
    """Bob listens; alice names bob by address, as the classroom chats did (the shared
    two-node fixture)."""
    alice, bob = pair
    return alice.node, alice.log, bob.node, bob.log


def test_alice_and_bob_talk_both_ways(alice_bob: tuple[Node, EventLog, Node, EventLog]) -> None:
    """A direct message each way arrives once, with the sender's nick, and is acked."""
    alice, alice_log, bob, bob_log = alice_bob
    to_bob = alice.send("bob", "hello bob")
    to_alice = bob.send("alice", "hi alice")
    got = bob_log.wait("message", lambda e: e["id"] == to_bob)[0]
    assert got["from"] == {"id": alice.node_id, "nick": "alice"}
    assert got["text"] == "hello bob" and got["to"] == "direct"
    alice_log.wait("message", lambda e: e["id"] == to_alice)
    alice_log.wait("delivered", lambda e: e["id"] == to_bob and e["to"] == bob.node_id)
    bob_log.wait("delivered", lambda e: e["id"] == to_alice)
    assert sorted(h["text"] for h in bob.history("alice")) == ["hello bob", "hi alice"]


def test_many_messages_arrive_once_and_in_order(
        alice_bob: tuple[Node, EventLog, Node, EventLog]) -> None:
    """A burst of 2,000 messages arrives complete, once each, in the order sent."""
    alice, alice_log, bob, bob_log = alice_bob
    ids = [alice.send("bob", f"m{i}") for i in range(2000)]
    bob_log.wait("message", count=2000, timeout=30)
    got = [e["id"] for e in bob_log.named("message")]
    assert got == ids
    alice_log.wait("delivered", count=2000, timeout=30)


def test_broadcast_reports_each_peer(tmp_path: Path) -> None:
    """A broadcast goes to every known peer and is acked per peer."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    carol, carol_log = make_node(tmp_path / "carol", "carol")
    alice, alice_log = make_node(tmp_path / "alice", "alice",
                                 peers=[f"127.0.0.1:{bob.port}", f"127.0.0.1:{carol.port}"])
    try:
        alice_log.wait("peer_joined", count=2)
        msg_id, targets = alice.broadcast("hello all")
        assert sorted(targets) == sorted([bob.node_id, carol.node_id])
        for log in (bob_log, carol_log):
            assert log.wait("message", lambda e: e["id"] == msg_id)[0]["to"] == "broadcast"
        acks = alice_log.wait("delivered", lambda e: e["id"] == msg_id, count=2)
        assert sorted(e["to"] for e in acks) == sorted(targets)
    finally:
        for node in (alice, bob, carol):
            node.close()


def test_message_to_offline_peer_waits_and_goes_when_it_is_back(tmp_path: Path) -> None:
    """Store and forward: queued while bob is away, also across alice's restart."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    port = bob.port
    alice, alice_log = make_node(tmp_path / "alice", "alice", peers=[f"127.0.0.1:{port}"])
    alice_log.wait("peer_joined")
    bob.close()
    alice_log.wait("peer_left")
    queued = alice.send("bob", "while you were out")
    alice.close()
    alice, alice_log = make_node(tmp_path / "alice", "alice", peers=[f"127.0.0.1:{port}"])
    assert alice.peers()[0]["queued"] == 1
    bob, bob_log = make_node(tmp_path / "bob", "bob", port=port)
    try:
        assert bob_log.wait("message", timeout=15)[0]["id"] == queued
        alice_log.wait("delivered", lambda e: e["id"] == queued, timeout=15)
    finally:
        alice.close()
        bob.close()


def test_a_new_key_at_a_pinned_address_is_refused(tmp_path: Path) -> None:
    """Bob's address is pinned to his key; someone else there is refused and alice told."""
    bob, _ = make_node(tmp_path / "bob", "bob")
    port = bob.port
    alice, alice_log = make_node(tmp_path / "alice", "alice", peers=[f"127.0.0.1:{port}"])
    alice_log.wait("peer_joined")
    bob.close()
    mallory, mallory_log = make_node(tmp_path / "mallory", "bob", port=port)
    try:
        err = alice_log.wait("error", lambda e: e["code"] == "key_mismatch", timeout=15)[0]
        assert err["expected"] == bob.node_id and err["got"] == mallory.node_id
        assert not mallory_log.named("peer_joined")
    finally:
        alice.close()
        mallory.close()


def test_garbage_and_stalled_clients_leave_the_node_serving(
        alice_bob: tuple[Node, EventLog, Node, EventLog]) -> None:
    """Plaintext garbage, a stalled handshake and a bad frame after TLS hurt no one else."""
    alice, alice_log, bob, bob_log = alice_bob
    stalled = socket.create_connection(("127.0.0.1", bob.port))
    garbage = socket.create_connection(("127.0.0.1", bob.port))
    garbage.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", bob.port)))
    tls.sendall(struct.pack(">I", 0xFFFFFFF0) + b"x" * 100)
    try:
        msg = alice.send("bob", "still there?")
        bob_log.wait("message", lambda e: e["id"] == msg)
        tls.settimeout(5)
        said = b""
        while chunk := tls.recv(4096):
            said += chunk
        assert b'"t":"hello"' in said and b"frame length" in said, "told why, then closed"
        refused = bob_log.wait("error", lambda e: e["code"] == "session_refused")[0]
        assert refused["address"] == "127.0.0.1"
        stalled.settimeout(15)
        assert stalled.recv(1) == b"", "a handshake that never finishes is closed"
    finally:
        for s in (stalled, garbage, tls):
            s.close()
    assert bob.stats()["sessions"]


def test_second_node_on_one_home_is_refused(tmp_path: Path) -> None:
    """A home is used by one node at a time, with a clear error."""
    node, _ = make_node(tmp_path / "a", "a")
    try:
        with pytest.raises(NodeError, match="in use by another lanchat"):
            make_node(tmp_path / "a", "a")
    finally:
        node.close()


def test_doctor_checks_its_port_without_a_false_refusal(tmp_path: Path) -> None:
    """/doctor's port check connects to the node's own port: the node knows the probe, so
    no `session_refused` error reaches the screen, and the report comes as an `output`
    event from its own thread (the prompt does not wait)."""
    from lanchat.commands import Context, build_registry, execute
    from lanchat.plugins import Plugins

    node, log = make_node(tmp_path / "solo", "solo")
    plugins = Plugins(None, entry_points=False)
    try:
        assert node.probe_port("127.0.0.1")
        ctx = Context(node, build_registry(plugins), plugins)
        assert execute(ctx, "/doctor") is None
        report = log.wait("output", lambda e: e["command"] == "/doctor")[0]["data"]
        assert report["node"]["port"] == node.port
        wait_until(lambda: node.stats()["counters"].get("self_probes") == 1,
                   "the node took its own probe")
        assert [e for e in log.events if e.name == "error"] == []
    finally:
        node.close()
        plugins.close()
