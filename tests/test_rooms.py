"""Rooms, sans-IO: signed frames, membership without a server, author order, catch-up."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from lanchat.identity import Identity
from lanchat.protocol import ProtocolError, decode_payload, encode
from lanchat.rooms.model import Room, Verdict
from lanchat.rooms.names import check_room
from lanchat.rooms.storage import SCHEMA, RoomLog
from lanchat.rooms.wire import RoomMember, RoomMsg, RoomRoster, RoomSync, register, sign


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    register()
    base = tmp_path_factory.mktemp("ids")
    return {n: Identity.load_or_create(base / n) for n in ("alice", "bob", "carol", "mallory")}


def msg(who: Identity, seq: int, text: str = "hi", room: str = "#lunch") -> RoomMsg:
    return sign(RoomMsg(room, f"m{seq:04d}{who.node_id[:8]}", who.node_id, who.key_b64, seq,
                        1_700_000_000_000 + seq, "nick", text), who.sign)


def statement(who: Identity, joined: bool = True, ver: int = 1, kind: str = "open",
              room: str = "#lunch") -> RoomMember:
    return sign(RoomMember(room, who.node_id, who.key_b64, kind, joined, ver, "nick"),
                who.sign)


def test_room_names_have_one_canonical_form() -> None:
    """'#Lunch' and '#lunch' are one room; names without '#' or with spaces are refused."""
    assert check_room("#Lunch") == "#lunch"
    for bad in ("lunch", "#", "#two words", "#a\x1b[2J", "#" + "x" * 40, "#a/b"):
        with pytest.raises(ValueError):
            check_room(bad)


def test_a_room_message_survives_the_wire_and_its_signature_checks(
        people: dict[str, Identity]) -> None:
    """Encode, decode, verify; any changed field or a key that is not the author's fails."""
    m = msg(people["alice"], 1, "hello \x1b[2J")
    back = decode_payload(encode(m)[4:])
    assert back == m and back.verified()
    assert not replace(m, text="hello!").verified()
    assert not replace(m, seq=2).verified()
    assert not replace(m, room="#other").verified()
    # mallory signs with her own key but names alice as the author
    forged = sign(replace(m, key=people["mallory"].key_b64), people["mallory"].sign)
    assert not forged.verified()
    assert not replace(m, sig="AAAA").verified()


def test_room_frames_refuse_bad_fields() -> None:
    """A non-canonical room, a negative seq or a wrong kind is a ProtocolError."""
    register()
    good = {"t": "room_msg", "room": "#lunch", "id": "x1", "author": "a", "key": "k",
            "seq": 1, "ts": 0, "nick": "n", "text": "t", "sig": "s"}
    decode_payload(encode(RoomMsg.from_dict(good))[4:])
    for patch in ({"room": "#Lunch"}, {"seq": 0}, {"seq": "1"}, {"nick": "x" * 300},
                  {"room": "x"}):
        with pytest.raises(ProtocolError):
            RoomMsg.from_dict({**good, **patch})
    with pytest.raises(ProtocolError):
        RoomSync.from_dict({"room": "#lunch", "heads": {"a": -1}, "authors": None})


def test_open_room_members_are_those_whose_latest_word_is_in(
        people: dict[str, Identity]) -> None:
    """Statements in any order converge: the higher version wins."""
    a, b = people["alice"], people["bob"]
    room = Room("#lunch", "open", joined=True)
    assert room.accept_statement(statement(a, True, 5))[0] is Verdict.ACCEPTED
    verdict, change = room.accept_statement(statement(b, True, 3))
    assert verdict is Verdict.ACCEPTED and change.joined == {b.node_id}
    assert room.accept_statement(statement(b, False, 2))[0] is Verdict.STALE
    verdict, change = room.accept_statement(statement(b, False, 4))
    assert change.left == {b.node_id} and room.members() == {a.node_id}
    wrong_kind = statement(people["carol"], kind="private")
    assert room.accept_statement(wrong_kind)[0] is Verdict.REFUSED


def test_a_private_room_is_its_creators_signed_list(people: dict[str, Identity]) -> None:
    """Only listed peers count; only the creator's newer list changes it; kicks take effect."""
    a, b, m = people["alice"], people["bob"], people["mallory"]
    room = Room("#secret", "private", a.node_id, joined=True)
    v1 = sign(RoomRoster("#secret", a.node_id, a.key_b64, 1, (a.node_id, b.node_id)), a.sign)
    assert room.accept_roster(v1)[0] is Verdict.ACCEPTED
    assert room.members() == {a.node_id, b.node_id}
    # mallory is not listed: her statement is refused, whatever it says
    verdict, _ = room.accept_statement(statement(m, kind="private", room="#secret"))
    assert verdict is Verdict.REFUSED and m.node_id not in room.members()
    # a list from anyone but the creator is refused, even a well-signed one
    hers = sign(RoomRoster("#secret", m.node_id, m.key_b64, 9, (m.node_id,)), m.sign)
    assert room.accept_roster(hers)[0] is Verdict.REFUSED
    v2 = sign(RoomRoster("#secret", a.node_id, a.key_b64, 2, (a.node_id,)), a.sign)
    verdict, change = room.accept_roster(v2)
    assert verdict is Verdict.ACCEPTED and change.left == {b.node_id}
    assert room.accept_roster(v1)[0] is Verdict.STALE


def open_log(own: Identity) -> tuple[sqlite3.Connection, RoomLog]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(SCHEMA)
    db.executescript("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, msg_id TEXT, peer TEXT);")
    return db, RoomLog(own.node_id)


def shown(out: list[tuple[str, object]]) -> list[int]:
    return [m.seq for _, m in out if isinstance(m, RoomMsg)]


def test_an_early_message_waits_for_the_ones_before_it(people: dict[str, Identity]) -> None:
    """Copies from two members arrive out of order and twice: each shows once, in order."""
    db, log = open_log(people["carol"])
    a = people["alice"]
    assert shown(log.store_in(db, [("bob", msg(a, 3)), ("bob", msg(a, 4))], 0.0)) == []
    assert log.held[("#lunch", a.node_id)] == {3, 4}
    assert shown(log.store_in(db, [("alice", msg(a, 1))], 0.0)) == [1]
    out = log.store_in(db, [("alice", msg(a, 2)), ("alice", msg(a, 3)), ("bob", msg(a, 2))],
                       0.0)
    assert shown(out) == [2, 3, 4]
    assert log.heads("#lunch") == {a.node_id: 4} and not log.held
    # a restart reads the same marks back
    again = RoomLog(people["carol"].node_id)
    again.load(db)
    assert again.heads("#lunch") == {a.node_id: 4}


def test_a_gap_nobody_can_fill_is_given_up(people: dict[str, Identity]) -> None:
    """Messages 1-2 are gone for good: 3 and 4 show once the wait is over, still in order."""
    db, log = open_log(people["carol"])
    a = people["alice"]
    log.store_in(db, [("bob", msg(a, 4)), ("bob", msg(a, 3))], 0.0)
    assert [m.seq for m in log.give_up(db, ("#lunch", a.node_id))] == [3, 4]
    # a late copy of 1 is still shown once (late, counted), never twice
    assert shown(log.store_in(db, [("bob", msg(a, 1)), ("bob", msg(a, 1))], 0.0)) == [1]
    assert log.late == 1


def test_catch_up_sends_what_a_member_lacks_within_the_window(
        people: dict[str, Identity]) -> None:
    """A member's heads say what it has; the answer is the rest, per author in order."""
    db, log = open_log(people["carol"])
    a, b = people["alice"], people["bob"]
    log.store_in(db, [("x", msg(a, i)) for i in range(1, 6)]
                 + [("x", msg(b, i)) for i in range(1, 4)], 0.0)
    now = 1_700_000_000.0
    missing = log.window(db, "#lunch", {a.node_id: 3}, None, now)
    assert [(m.author, m.seq) for m in missing] == sorted(
        [(a.node_id, 4), (a.node_id, 5)] + [(b.node_id, i) for i in (1, 2, 3)])
    only_b = log.window(db, "#lunch", {}, [b.node_id], now)
    assert [m.seq for m in only_b] == [1, 2, 3]
    assert log.window(db, "#lunch", {}, None, now + 8 * 24 * 3600) == []


def test_own_messages_are_stored_with_their_recipients(
        people: dict[str, Identity], tmp_path: Path) -> None:
    """What this node posts is history too, with how many members it went to."""
    c = people["carol"]
    db, log = open_log(c)
    log.store_out(db, [(("p1", "p2"), msg(c, 1, "mine"))], 0.0)
    (row,) = log.history(db, "#lunch", 10)
    assert row.msg.text == "mine" and row.recipients == 2
