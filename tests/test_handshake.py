"""The session's state machine in memory: two machines talk through the wire format with
no sockets, and every state change is one the table allows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lanchat.api import CloseReason
from lanchat.handshake import SessionMachine, Step
from lanchat.identity import Identity
from lanchat.protocol import (
    ALLOWED,
    TRANSITIONS,
    Auth,
    Bye,
    Change,
    Chat,
    FrameDecoder,
    Hello,
    Message,
    Ping,
    Pong,
    ProtocolError,
    SessionState,
    encode,
    transition,
)


def wire(message: Message) -> Message:
    """Through the real encoder and decoder, as TLS would carry it."""
    return FrameDecoder().feed(encode(message))[0]


def identity(tmp_path: Path, name: str) -> Identity:
    return Identity.load_or_create(tmp_path / name)


def talk(a: SessionMachine, b: SessionMachine, first: Step) -> list[Step]:
    """Deliver `first`'s messages from a to b, then the answers back, until quiet or a
    fault; return every step taken."""
    steps, pending, sender, receiver = [first], list(first.send), a, b
    while pending and not steps[-1].fault:
        answers: list[Message] = []
        for message in pending:
            step = receiver.receive(wire(message))
            steps.append(step)
            answers.extend(step.send)
            if step.fault:
                break
        pending, sender, receiver = answers, receiver, sender
    return steps


def pair(tmp_path: Path, **server_kw: object) -> tuple[SessionMachine, SessionMachine]:
    server_id, client_id = identity(tmp_path, "server"), identity(tmp_path, "client")
    server = SessionMachine(server_id, "srv", 7001, server=True, instance="s1",
                            **server_kw)  # type: ignore[arg-type]
    client = SessionMachine(client_id, "cli", 7002, server=False, instance="c1")
    return server, client


def test_the_handshake_in_memory_makes_both_sides_ready(tmp_path: Path) -> None:
    """hello -> auth -> welcome: each side proves the other's id, nick, port and instance."""
    server, client = pair(tmp_path)
    client.start(server.identity.node_id)
    steps = talk(server, client, server.start())
    assert not any(s.fault for s in steps)
    assert [s.ready for s in steps].count(True) == 2
    assert server.state is client.state is SessionState.READY
    assert (server.peer_id, server.peer_nick, server.peer_port, server.peer_instance) == (
        client.identity.node_id, "cli", 7002, "c1")
    assert (client.peer_id, client.peer_nick, client.peer_instance) == (
        server.identity.node_id, "srv", "s1")
    chat = Chat("m1", 1.0, "hi")
    assert server.receive(wire(chat)).deliver == chat
    assert server.receive(Ping()).send == (Pong(),)


def test_a_proof_for_another_server_is_refused(tmp_path: Path) -> None:
    """An auth signed for a different server (a relay) fails the key proof."""
    server, client = pair(tmp_path)
    other = identity(tmp_path, "other")
    client.start(other.node_id)  # the client believes it talks to `other`
    hello = server.start().send[0]
    assert isinstance(hello, Hello)
    relayed = client.receive(dataclasses.replace(hello, node_id=other.node_id)).send[0]
    step = server.receive(wire(relayed))
    assert step.fault.startswith("key proof refused") and step.tell_peer
    assert server.state is SessionState.HANDSHAKE and not server.was_ready


def test_a_claimed_id_that_is_not_the_key_is_refused(tmp_path: Path) -> None:
    """The auth's id must be the hash of the key that signed."""
    server, client = pair(tmp_path)
    client.start(server.identity.node_id)
    hello = server.start().send[0]
    auth = client.receive(wire(hello)).send[0]
    assert isinstance(auth, Auth)
    step = server.receive(dataclasses.replace(auth, node_id=server.identity.node_id))
    assert step.fault == "key proof refused: signature does not verify"


def test_hello_from_another_id_than_the_certificate_is_refused(tmp_path: Path) -> None:
    """The client compares hello's id with the one the certificate proved."""
    server, client = pair(tmp_path)
    client.start(identity(tmp_path, "other").node_id)
    step = client.receive(wire(server.start().send[0]))
    assert step.fault == "hello id does not match the certificate"


def test_the_owner_can_refuse_a_proven_client(tmp_path: Path) -> None:
    """check_client runs after the proof; its reason goes to the peer."""
    server, client = pair(tmp_path, check_client=lambda pid: "blocked")
    client.start(server.identity.node_id)
    steps = talk(server, client, server.start())
    assert steps[-1].fault == "blocked" and server.state is SessionState.HANDSHAKE


def test_chat_before_the_handshake_and_other_versions_are_faults(tmp_path: Path) -> None:
    """Messages a state does not accept, and another protocol version, end the session."""
    server, client = pair(tmp_path)
    assert "unexpected 'msg'" in server.receive(Chat("m", 1.0, "early")).fault
    client.start(server.identity.node_id)
    hello = server.start().send[0]
    assert isinstance(hello, Hello)
    step = client.receive(dataclasses.replace(hello, version=99))
    assert "protocol v99" in step.fault


def test_bye_moves_to_closing_with_the_peers_reason(tmp_path: Path) -> None:
    server, client = pair(tmp_path)
    client.start(server.identity.node_id)
    talk(server, client, server.start())
    step = client.receive(wire(Bye("quit")))
    assert step.closed_by_peer == "quit" and client.state is SessionState.CLOSING
    assert (client.close_reason, client.close_detail) == (CloseReason.BYE, "quit")
    client.move(Change.LOST)
    assert client.state is SessionState.CLOSED


def test_byes_that_cross_keep_our_own_reason(tmp_path: Path) -> None:
    """Both sides say bye at once: the peer's bye reaches a closing session, which stays
    closing with its own reason (it was a loop error once)."""
    server, client = pair(tmp_path)
    client.start(server.identity.node_id)
    talk(server, client, server.start())
    client.move(Change.LOCAL_CLOSE, CloseReason.LOCAL, "quit")
    step = client.receive(wire(Bye("quit")))
    assert not step.fault and client.state is SessionState.CLOSING
    assert (client.close_reason, client.close_detail) == (CloseReason.LOCAL, "quit")


def test_every_state_change_is_in_the_table() -> None:
    """Moves not in TRANSITIONS raise; CLOSED has no way out; every state is reachable and
    every state that accepts messages is in ALLOWED."""
    for state in SessionState:
        for change in Change:
            if (state, change) in TRANSITIONS:
                assert transition(state, change) is TRANSITIONS[(state, change)]
            else:
                with pytest.raises(ProtocolError):
                    transition(state, change)
    assert not [k for k in TRANSITIONS if k[0] is SessionState.CLOSED]
    reachable = {SessionState.HANDSHAKE} | set(TRANSITIONS.values())
    assert reachable == set(SessionState)
    assert {state for state, _ in ALLOWED} == set(SessionState)
