"""A stranger on the LAN against one in-process node's rooms: what it can make the node
keep. Frames are handed to the rooms extension as if a session had read them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from test_rooms_nodes import Member

from lanchat.identity import node_id_from_spki
from lanchat.protocol import Message
from lanchat.rooms import gossip
from lanchat.rooms.wire import MAX_ROOM_MEMBERS, RoomMember, RoomRoster, sign


class Key:
    """A throwaway key pair: what a stranger makes as many of as it likes."""

    def __init__(self) -> None:
        self.private = ed25519.Ed25519PrivateKey.generate()
        spki = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.node_id = node_id_from_spki(spki)
        self.key_b64 = base64.b64encode(spki).decode()

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.private.sign(payload)).decode()


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Member]:
    m = Member(tmp_path / "v", "victim", [])
    yield m
    m.node.close()


def feed(m: Member, peer: Key, frames: list[Message]) -> None:
    session = SimpleNamespace(peer_id=peer.node_id)

    def run() -> None:
        for f in frames:
            m.rooms.on_message(session, f)  # type: ignore[arg-type]
    m.rooms.node.runtime.call(run)


def statement(who: Key, room: str, kind: str = "open") -> RoomMember:
    return sign(RoomMember(room, who.node_id, who.key_b64, kind, True, 1, "x"), who.sign)


def test_a_stranger_cannot_grow_an_open_room_past_its_member_limit(victim: Member) -> None:
    victim.rooms.join("#lobby")
    stranger = Key()
    extra = 20
    feed(victim, stranger, [statement(Key(), "#lobby")
                            for _ in range(MAX_ROOM_MEMBERS + extra)])
    assert len(victim.rooms.info("#lobby")["members"]) <= MAX_ROOM_MEMBERS
    # and the room list of rooms the node is not in stays bounded too
    feed(victim, stranger, [statement(stranger, f"#r{i}")
                            for i in range(gossip.MAX_DIRECTORY_ROOMS + extra)])
    assert len(victim.rooms.listing()) <= gossip.MAX_DIRECTORY_ROOMS + 1


def test_a_stranger_cannot_invite_the_node_into_unbounded_rooms(victim: Member) -> None:
    stranger = Key()
    rosters = [sign(RoomRoster(f"#p{i}", stranger.node_id, stranger.key_b64, 1,
                               (stranger.node_id, victim.id)), stranger.sign)
               for i in range(gossip.MAX_ROOMS + 20)]
    feed(victim, stranger, rosters)  # type: ignore[arg-type]
    assert len(victim.rooms.joined()) <= gossip.MAX_ROOMS
