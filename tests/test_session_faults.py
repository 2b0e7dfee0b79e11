"""Bad peers at the session layer, spoken to bob byte by byte over real TLS on loopback."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanchat import protocol as p
from lanchat.identity import Identity, auth_payload
from lanchat.node import Node
from tests.nodes import EventLog, make_node


@pytest.fixture
def bob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Node, EventLog]]:
    """Bob with quick liveness, so stalls are found in about a second."""
    monkeypatch.setenv("LANCHAT_HEARTBEAT_S", "0.3")
    monkeypatch.setenv("LANCHAT_DEAD_AFTER_S", "1.0")
    node, log = make_node(tmp_path / "bob", "bob")
    yield node, log
    node.close()


def connect(port: int) -> tuple[ssl.SSLSocket, p.Hello]:
    """A TLS client that has read bob's hello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    hello = read(sock)
    assert isinstance(hello, p.Hello)
    return sock, hello


def read(sock: ssl.SSLSocket) -> p.Message | None:
    """The next message, or None at EOF."""
    decoder = p.FrameDecoder()
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        messages = decoder.feed(chunk)
        if messages:
            return messages[0]


def refusal(sock: ssl.SSLSocket) -> str:
    """The reason bob gave before closing."""
    message = read(sock)
    assert isinstance(message, p.Refused), message
    assert read(sock) is None, "bob closes after refusing"
    return message.reason


def test_a_bad_signature_is_refused(bob: tuple[Node, EventLog], tmp_path: Path) -> None:
    """A client whose proof does not verify is told so and dropped."""
    node, log = bob
    me = Identity.load_or_create(tmp_path / "mallory")
    sock, _ = connect(node.port)
    sock.sendall(p.encode(p.Auth(me.node_id, "mallory", me.key_b64, me.sign(b"other"), 1)))
    assert "key proof refused" in refusal(sock)
    assert log.wait("error", lambda e: e["code"] == "session_refused")


def test_a_replayed_proof_for_another_nonce_is_refused(bob: tuple[Node, EventLog],
                                                       tmp_path: Path) -> None:
    """A proof recorded from one handshake is worthless in the next."""
    node, _ = bob
    me = Identity.load_or_create(tmp_path / "mallory")
    first, hello = connect(node.port)
    recorded = me.sign(auth_payload(hello.nonce, hello.node_id, me.node_id))
    first.close()
    second, _ = connect(node.port)
    second.sendall(p.encode(p.Auth(me.node_id, "mallory", me.key_b64, recorded, 1)))
    assert "key proof refused" in refusal(second)


def test_a_proof_for_someone_elses_id_is_refused(bob: tuple[Node, EventLog],
                                                 tmp_path: Path) -> None:
    """Claiming alice's id with mallory's key fails: the id is the key's hash."""
    node, _ = bob
    me = Identity.load_or_create(tmp_path / "mallory")
    alice = Identity.load_or_create(tmp_path / "alice")
    sock, hello = connect(node.port)
    sig = me.sign(auth_payload(hello.nonce, hello.node_id, alice.node_id))
    sock.sendall(p.encode(p.Auth(alice.node_id, "alice", me.key_b64, sig, 1)))
    assert "key proof is for another id" in refusal(sock)


def test_another_protocol_version_is_named(bob: tuple[Node, EventLog], tmp_path: Path) -> None:
    """A newer peer is told which versions meet."""
    node, _ = bob
    me = Identity.load_or_create(tmp_path / "future")
    sock, hello = connect(node.port)
    sig = me.sign(auth_payload(hello.nonce, hello.node_id, me.node_id))
    sock.sendall(p.encode(p.Auth(me.node_id, "future", me.key_b64, sig, 1, version=2)))
    assert "protocol v2" in refusal(sock)


def test_tls_1_2_is_refused(bob: tuple[Node, EventLog]) -> None:
    """Only TLS 1.3 is spoken."""
    node, _ = bob
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(socket.create_connection(("127.0.0.1", node.port), timeout=5))


def test_a_sender_stalled_mid_frame_is_dropped(bob: tuple[Node, EventLog],
                                               tmp_path: Path) -> None:
    """An authenticated peer that trickles one frame forever is closed, not kept alive."""
    node, log = bob
    me = Identity.load_or_create(tmp_path / "slowpoke")
    sock, hello = connect(node.port)
    sig = me.sign(auth_payload(hello.nonce, hello.node_id, me.node_id))
    sock.sendall(p.encode(p.Auth(me.node_id, "slowpoke", me.key_b64, sig, 1)))
    assert isinstance(read(sock), p.Welcome)
    log.wait("peer_joined")
    sock.sendall(struct.pack(">I", 200) + b'{"t":"msg"')
    deadline = time.monotonic() + 15
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            sock.sendall(b" ")
        except OSError:
            closed = True
            break
        sock.settimeout(0.2)
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    closed = True
                    break
        except (TimeoutError, ssl.SSLWantReadError):
            pass
    assert closed, "the stalled session was closed"
    left = log.wait("peer_left")[0]
    assert left["reason"] == "error"
