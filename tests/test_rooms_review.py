"""A stranger on the LAN against one in-process node's rooms: what it can make the node
keep. Frames are handed to the rooms extension as if a session had read them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from test_rooms_nodes import Member

from lanchat.delivery import new_message_id
from lanchat.identity import node_id_from_spki
from lanchat.protocol import Message, ProtocolError
from lanchat.rooms import gossip, invites
from lanchat.rooms.wire import (
    MAX_ROOM_MEMBERS,
    MAX_SEQ,
    RoomMember,
    RoomMsg,
    RoomRoster,
    RoomSync,
    RoomTopic,
    sign,
)


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
    """Invitations wait for consent, and what waits is bounded per inviter and in all."""
    stranger = Key()

    def invite(who: Key, name: str) -> RoomRoster:
        return sign(RoomRoster(name, who.node_id, who.key_b64, 1, (who.node_id, victim.id)),
                    who.sign)
    feed(victim, stranger, [invite(stranger, f"#p{i}") for i in range(20)])
    assert victim.rooms.joined() == []
    assert len(victim.rooms.invitations()) == invites.MAX_INVITES_PER_INVITER
    many = [Key() for _ in range(invites.MAX_INVITES + 5)]
    for k in many:
        feed(victim, k, [invite(k, "#q")])
    assert len(victim.rooms.invitations()) == invites.MAX_INVITES
    assert victim.rooms.joined() == []
    assert victim.node.stats()["counters"]["room_refused"] >= 20


def test_repeated_catch_up_requests_are_answered_once_while_in_flight(
        victim: Member, monkeypatch: pytest.MonkeyPatch) -> None:
    victim.rooms.join("#lobby")
    author, asker = Key(), Key()
    now_ms = int(time.time() * 1000)
    posts = [sign(RoomMsg("#lobby", new_message_id(), author.node_id, author.key_b64, seq,
                          now_ms + seq, "a", f"p{seq}"), author.sign)
             for seq in range(1, 201)]
    victim.rooms.node.store.transact(
        lambda db: victim.rooms.log.store_in(db, [(author.node_id, m) for m in posts], 0.0))
    feed(victim, asker, [statement(asker, "#lobby")])
    checks: list[str] = []
    verified = RoomMsg.verified

    def counting(self: RoomMsg) -> bool:
        checks.append(self.msg_id)
        return verified(self)
    monkeypatch.setattr(RoomMsg, "verified", counting)
    queued: list[str] = []
    queue_frame = victim.rooms.node.queue_frame

    def counting_queue(peers: list[str], m: Message) -> None:
        queued.append(getattr(m, "msg_id", ""))
        queue_frame(peers, m)
    monkeypatch.setattr(victim.rooms.node, "queue_frame", counting_queue)
    # ten "I have nothing" requests: one answer's worth of work, not ten
    feed(victim, asker, [RoomSync("#lobby", (), None) for _ in range(10)])
    assert sorted(queued) == sorted(m.msg_id for m in posts)
    assert len(checks) == len(posts)


def test_a_relayer_cannot_move_signed_bytes_between_nick_and_text() -> None:
    author = Key()
    real = sign(RoomMsg("#lobby", new_message_id(), author.node_id, author.key_b64, 1,
                        int(time.time() * 1000), "ann", "pay bob\0 50"), author.sign)
    forged = {**real.to_dict(), "nick": "ann\0pay bob", "text": " 50"}
    try:
        copy = RoomMsg.from_dict(forged)
    except ProtocolError:
        return
    assert not copy.verified()
    t = sign(RoomTopic("#lobby", author.node_id, author.key_b64, 1, "ann", "a\0b"),
             author.sign)
    with pytest.raises(ProtocolError):
        RoomTopic.from_dict({**t.to_dict(), "nick": "ann\0a", "topic": "b"})


def test_a_member_cannot_lock_the_topic_with_a_version_from_the_far_future(
        victim: Member) -> None:
    victim.rooms.join("#lobby")
    member = Key()
    feed(victim, member, [statement(member, "#lobby"),
                          sign(RoomTopic("#lobby", member.node_id, member.key_b64, MAX_SEQ,
                                         "m", "mine forever"), member.sign)])
    assert victim.rooms.info("#lobby")["topic"] == ""
    victim.rooms.set_topic("#lobby", "ours")
    topic = victim.rooms.rooms["#lobby"].topic
    assert topic is not None and topic.ver < MAX_SEQ


def test_parting_a_private_room_sticks_when_its_creator_changes_the_list(
        victim: Member) -> None:
    creator, other = Key(), Key()

    def roster(ver: int, *members: str) -> RoomRoster:
        return sign(RoomRoster("#p", creator.node_id, creator.key_b64, ver,
                               (creator.node_id, *members)), creator.sign)
    rid = f"#p@{creator.node_id}"
    feed(victim, creator, [roster(1, victim.id)])
    assert victim.rooms.joined() == []  # an invitation waits for the user's word
    victim.rooms.join("#p")
    assert victim.rooms.joined() == [rid]
    victim.rooms.part("#p")
    feed(victim, creator, [roster(2, victim.id, other.node_id)])
    assert victim.rooms.joined() == [] and victim.rooms.invitations() == []
    victim.rooms.join("#p")  # still listed: it may come back by itself
    assert victim.rooms.joined() == [rid]
    feed(victim, creator, [roster(3, other.node_id)])  # kicked
    feed(victim, creator, [roster(4, victim.id, other.node_id)])  # invited again
    assert [i["room_id"] for i in victim.rooms.invitations()] == [rid]
    victim.rooms.join("#p")
    assert victim.rooms.joined() == [rid]


def test_relayed_copies_still_queued_are_known_as_relayed_after_a_restart(
        tmp_path: Path) -> None:
    victim = Member(tmp_path / "v", "victim", [])
    try:
        victim.rooms.join("#lobby")
        author, asker = Key(), Key()
        now_ms = int(time.time() * 1000)
        posts = [sign(RoomMsg("#lobby", new_message_id(), author.node_id, author.key_b64,
                              seq, now_ms + seq, "a", f"p{seq}"), author.sign)
                 for seq in range(1, 4)]
        victim.rooms.node.store.transact(
            lambda db: victim.rooms.log.store_in(db, [(author.node_id, m) for m in posts],
                                                 0.0))
        feed(victim, asker, [statement(asker, "#lobby"), RoomSync("#lobby", (), None)])
    finally:
        victim.node.close()
    again = Member(tmp_path / "v", "victim", [])
    try:
        relayed = again.rooms.node.runtime.call(lambda: dict(again.rooms.relayed))
        assert relayed == {asker.node_id: {m.msg_id for m in posts}}
    finally:
        again.node.close()
