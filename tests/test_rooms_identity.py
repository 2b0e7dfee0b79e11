"""A room is (name, creator): strangers can neither squat nor shadow a name; invitations
wait for the user's word; only members post; a busy open room keeps taking members. One
in-process node, frames handed to its rooms extension as a session would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rooms_nodes import Member
from test_rooms_review import Key, feed

from lanchat.delivery import new_message_id
from lanchat.rooms import RoomError, model
from lanchat.rooms.invites import INVITE_TTL_S, MAX_INVITES_PER_INVITER, Invites
from lanchat.rooms.labels import RoomRef, find, labels
from lanchat.rooms.wire import (
    MAX_ROOM_MEMBERS,
    RoomMember,
    RoomMsg,
    RoomRoster,
    sign,
)


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Member]:
    m = Member(tmp_path / "v", "victim", [])
    yield m
    m.node.close()


def roster(creator: Key, name: str, ver: int, *members: str) -> RoomRoster:
    return sign(RoomRoster(name, creator.node_id, creator.key_b64, ver,
                           (creator.node_id, *members)), creator.sign)


def said(who: Key, name: str, joined: bool = True, ver: int = 1, creator: str = ""
         ) -> RoomMember:
    kind = "private" if creator else "open"
    return sign(RoomMember(name, who.node_id, who.key_b64, kind, joined, ver, "x",
                           creator=creator), who.sign)


def post(who: Key, name: str, seq: int, text: str, creator: str = "",
         ts: int | None = None) -> RoomMsg:
    return sign(RoomMsg(name, new_message_id(), who.node_id, who.key_b64, seq,
                        ts if ts is not None else int(time.time() * 1000), "x", text,
                        creator=creator), who.sign)


def admitted(m: Member, sender: Key, frames: list[RoomMsg]) -> list[str]:
    kept = m.rooms.node.runtime.call(lambda: m.rooms.messages.admit(sender.node_id, list(frames)))
    return [f.text for f in kept]


def test_a_stranger_can_neither_squat_nor_shadow_a_room_name(victim: Member) -> None:
    """Mallory's #team reaches the node before alice's: both are invitations, two rooms;
    shown and typed with whose they are; an open #team is a third room."""
    alice, mallory = Key(), Key()
    victim.rooms.join("#team")  # the open one
    feed(victim, mallory, [roster(mallory, "#team", 1, victim.id)])
    feed(victim, alice, [roster(alice, "#team", 1, victim.id)])
    assert {i["room_id"] for i in victim.rooms.invitations()} == {
        f"#team@{alice.node_id}", f"#team@{mallory.node_id}"}
    assert victim.node.stats()["counters"].get("room_refused", 0) == 0
    invited = victim.log.wait("room_invited", count=2)
    assert all(e["room"].startswith("#team (") for e in invited)  # whose, on screen
    with pytest.raises(RoomError, match="3 rooms go by '#team'"):
        victim.rooms.join("#team")  # ambiguous: refused, candidates listed
    view = victim.rooms.join(f"#team@{alice.node_id[:6]}")  # a disambiguated form works
    assert view["room_id"] == f"#team@{alice.node_id}" and view["creator"] == alice.node_id
    assert sorted(victim.rooms.joined()) == ["#team", f"#team@{alice.node_id}"]
    joined = victim.log.wait("room_joined", lambda e: e["room_id"] != "#team")[0]
    assert joined["room"].startswith("#team (") and joined["room"].endswith(
        f"#{alice.node_id[:4]})")
    # typed names: ambiguous refused; the open room's and alice's each reachable
    with pytest.raises(RoomError, match="go by '#team'"):
        victim.rooms.post("#team", "to whom?")
    assert victim.rooms.post("#team@open", "open")["room_id"] == "#team"
    assert victim.rooms.post("#team", "open", exact=True)["room_id"] == "#team"
    sent = victim.rooms.post(f"#team@{alice.node_id}", "hi alice")
    assert sent["room_id"] == f"#team@{alice.node_id}" and sent["members"] == [alice.node_id]
    # alice's and mallory's posts land in their own rooms only
    assert admitted(victim, alice, [post(alice, "#team", 1, "a", alice.node_id)]) == ["a"]
    assert admitted(victim, mallory, [post(mallory, "#team", 1, "m", mallory.node_id)]) == []
    rows = victim.rooms.listing()
    assert {r["room_id"] for r in rows} == {"#team", f"#team@{alice.node_id}"}
    assert {r["room"] for r in rows} == {"#team (open)", joined["room"]}


def test_labels_and_typed_room_names() -> None:
    a1, a2 = "a" * 52, "a" * 10 + "b" * 42
    refs = [RoomRef("#x", "#x", "", ""), RoomRef(f"#x@{a1}", "#x", a1, "alice"),
            RoomRef(f"#x@{a2}", "#x", a2, "alice"), RoomRef("#solo", "#solo", "", "")]
    shown = labels(refs, [])
    assert shown["#solo"] == "#solo" and shown["#x"] == "#x (open)"
    assert shown[f"#x@{a1}"] == "#x (alice#" + a1[:11] + ")"  # the suffix grows to differ
    assert find(shown[f"#x@{a2}"], refs).id == f"#x@{a2}"  # what is shown can be typed
    assert find("#x@open", refs).id == "#x" and find("#solo", refs).id == "#solo"
    with pytest.raises(LookupError, match="2 rooms go by"):
        find("#x@alice", refs)  # two alices: still ambiguous
    with pytest.raises(ValueError):
        find("#x y", refs)


def test_an_invitation_waits_for_consent_is_bounded_and_expires(victim: Member) -> None:
    carol, dave = Key(), Key()
    feed(victim, carol, [roster(carol, "#plans", 1, victim.id, dave.node_id)])
    assert victim.rooms.joined() == []
    event = victim.log.wait("room_invited")[0]
    assert event["by"]["id"] == carol.node_id and event["trust"] is None
    assert event["members"] == 3
    text = victim.run("/invites").text
    assert "never met" in text and "/join #plans" in text
    # posts and catch-up are not taken before the user says yes
    assert admitted(victim, carol, [post(carol, "#plans", 1, "early", carol.node_id)]) == []
    sent: list[tuple[str, object]] = []
    victim.rooms.gossip.send = lambda peer, frame: sent.append((peer, frame))  # type: ignore[method-assign]
    out = victim.run("/invites decline #plans")
    assert out.data["room_id"] == f"#plans@{carol.node_id}"
    assert victim.rooms.invitations() == [] and victim.rooms.joined() == []
    told = {peer for peer, f in sent if isinstance(f, RoomMember) and not f.joined}
    assert told == {carol.node_id, dave.node_id}  # they stop sending to this node
    # bounded per inviter and expiring (the clock is the caller's)
    pending = Invites()
    for i in range(MAX_INVITES_PER_INVITER + 3):
        try:
            pending.offer(roster(carol, f"#r{i}", 1, victim.id), now=100.0)
        except OverflowError:
            pass
    assert len(pending.pending) == MAX_INVITES_PER_INVITER
    assert len(pending.prune(now=100.0 + INVITE_TTL_S)) == MAX_INVITES_PER_INVITER
    assert pending.pending == {}


def test_only_members_post_and_a_parted_member_cannot(victim: Member) -> None:
    victim.rooms.join("#lobby")
    stranger, ann = Key(), Key()
    # open room: a stranger who never joined cannot post; once it says it joined, it can
    assert admitted(victim, stranger, [post(stranger, "#lobby", 1, "drive-by")]) == []
    feed(victim, ann, [said(ann, "#lobby")])
    assert admitted(victim, ann, [post(ann, "#lobby", 1, "hello")]) == ["hello"]
    # private room: listed, parted, still listed: its own posts are refused; a copy of
    # what it said before it parted may still be relayed by a member
    creator = Key()
    feed(victim, creator, [roster(creator, "#inner", 1, victim.id, ann.node_id)])
    victim.rooms.join("#inner")
    cid = creator.node_id
    before = int(time.time() * 1000)
    feed(victim, ann, [said(ann, "#inner", True, before - 10, cid),
                       said(ann, "#inner", False, before, cid)])
    assert ann.node_id not in {m["id"] for m in victim.rooms.info("#inner")["members"]}
    assert admitted(victim, ann, [post(ann, "#inner", 1, "after", cid, before + 5)]) == []
    assert admitted(victim, creator, [post(ann, "#inner", 1, "said before", cid,
                                           before - 5)]) == ["said before"]
    assert victim.node.stats()["counters"]["room_refused"] >= 2


def test_parted_members_make_room_for_new_ones(victim: Member,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A room's worth of members came and went: the oldest parted statement (and its row)
    goes, so the busy room keeps taking members; members who are in are never pushed out.
    (The cap is 256; 16 here: every statement is passed to every member.)"""
    cap = 16
    assert cap < MAX_ROOM_MEMBERS
    monkeypatch.setattr(model, "MAX_ROOM_MEMBERS", cap)
    victim.rooms.join("#busy")
    keys = [Key() for _ in range(cap)]
    feed(victim, keys[0], [said(k, "#busy", True, 1) for k in keys[:-1]])
    feed(victim, keys[0], [said(k, "#busy", False, 2) for k in keys[:-1]])
    newcomer = Key()
    feed(victim, newcomer, [said(newcomer, "#busy", True, 3)])
    members = {m["id"] for m in victim.rooms.info("#busy")["members"]}
    assert newcomer.node_id in members

    def rows() -> int:
        return int(victim.node.store.read(lambda db: db.execute(
            "SELECT count(*) FROM room_members WHERE room='#busy'").fetchone()[0]))
    assert rows() == cap
    # full of members who are in: a stranger's next key is still refused
    refused = victim.node.stats()["counters"].get("room_refused", 0)
    fresh = [Key() for _ in range(cap)]
    feed(victim, fresh[0], [said(k, "#busy", True, 4) for k in fresh])
    assert len(victim.rooms.info("#busy")["members"]) <= cap
    assert rows() == cap
    assert victim.node.stats()["counters"]["room_refused"] > refused
