"""Rooms between in-process nodes on 127.0.0.1: catch-up from a relay, history for a new
member, topics, the room list, commands and the plugin hook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nodes
from lanchat import rooms
from lanchat.commands import execute
from lanchat.delivery import new_message_id
from lanchat.events import Event
from lanchat.hookspecs import hookimpl
from lanchat.plugins import Plugins
from lanchat.rooms import Rooms
from lanchat.rooms.wire import RoomMsg


class Member(nodes.Peer):
    """A started node with rooms (tests/nodes.py `Peer`), its plugins always bridged."""

    def __init__(self, home: Path, nick: str, peers: list[Member], port: int = 0,
                 plugins: Plugins | None = None) -> None:
        super().__init__(home, nick, peers=[p.address for p in peers], port=port,
                         plugins=plugins or Plugins(None, entry_points=False),
                         extensions={"rooms": rooms.attach})
        self.rooms: Rooms = self.ext["rooms"]

    def run(self, line: str) -> Any:
        out = execute(self.ctx, line)
        assert out is not None
        return out

    def texts(self, room: str, author: Member, count: int) -> list[str]:
        got = self.log.wait("message", lambda e: e["room"] == room
                            and e["from"]["id"] == author.id, count=count, timeout=20)
        return [e["text"] for e in got]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    for m in made:
        m.close()


def fill(room: str, *members: Member) -> None:
    """Wait until every member's events show all of them in `room`."""
    want = {m.id for m in members}

    def view(events: list[Event]) -> set[str]:
        ids: set[str] = set()
        for e in events:
            if e.fields.get("room") != room:
                continue
            if e.name == "room_joined":
                ids |= {x["id"] for x in e["members"]}
            elif e.name == "member_joined":
                ids.add(e["member"]["id"])
            elif e.name == "member_left":
                ids.discard(e["member"]["id"])
        return ids

    for m in members:
        m.log.wait_until(lambda events: view(events) >= want, 20, f"{m.nick} sees all in {room}")


def test_a_member_back_from_offline_gets_what_it_missed_from_a_relay(
        tmp_path: Path, started: list[Member]) -> None:
    """Carol is away while alice posts; alice is gone when carol is back: bob relays."""
    alice = Member(tmp_path / "a", "alice", [])
    started.append(alice)
    bob = Member(tmp_path / "b", "bob", [alice])
    started.append(bob)
    carol = Member(tmp_path / "c", "carol", [alice, bob])
    started.append(carol)
    for m in (alice, bob, carol):
        m.run("/join #lunch")
    fill("#lunch", alice, bob, carol)
    carol_port = carol.node.port
    carol.node.close()
    started.remove(carol)
    for i in range(30):
        alice.run(f"/msg #lunch while you were out {i}")
    assert bob.texts("#lunch", alice, 30)[-1] == "while you were out 29"
    alice.node.close()
    started.remove(alice)
    carol = Member(tmp_path / "c", "carol", [bob], port=carol_port)
    started.append(carol)
    got = carol.texts("#lunch", alice, 30)
    assert got == [f"while you were out {i}" for i in range(30)]
    assert carol.node.stats()["counters"].get("room_forged", 0) == 0


def test_a_new_member_gets_history_and_the_topic(tmp_path: Path,
                                                  started: list[Member]) -> None:
    """Bob joins after alice talked and set a topic: he gets both; /names and /rooms say
    who is where; a private room is never listed to others."""
    seen: list[dict[str, Any]] = []

    class Hook:
        @hookimpl
        def lanchat_room_joined(self, node: Any, room: dict[str, Any]) -> None:
            seen.append(room)

    alice = Member(tmp_path / "a", "alice", [])
    started.append(alice)
    bob = Member(tmp_path / "b", "bob", [alice],
                 plugins=Plugins(None, entry_points=False, extra=[Hook()]))
    started.append(bob)
    alice.run("/join #lunch")
    alice.run("/topic #lunch pizza at noon")
    for i in range(5):
        alice.run(f"/msg #lunch early {i}")
    alice.run("/join #plans private")
    bob.run("/join #Lunch")
    assert bob.texts("#lunch", alice, 5) == [f"early {i}" for i in range(5)]
    topic = bob.log.wait("topic", lambda e: e["room"] == "#lunch")[0]
    assert topic["topic"] == "pizza at noon" and topic["by"]["nick"] == "alice"
    assert seen and seen[0]["room"] == "#lunch" and seen[0]["kind"] == "open"
    listing = bob.run("/rooms").data
    assert [r["room"] for r in listing] == ["#lunch"]
    alice.log.wait("member_joined", lambda e: e["member"]["id"] == bob.id)
    names = alice.run("/names #lunch").data
    assert {m["nick"] for m in names["members"]} == {"alice", "bob"}
    history = alice.rooms.history("#lunch", 3)
    assert [h["text"] for h in history] == ["early 2", "early 3", "early 4"]
    assert all(h["direction"] == "out" for h in history)


def test_room_commands_explain_mistakes(tmp_path: Path, started: list[Member]) -> None:
    """Bad names, rooms not joined and kicks by a non-creator are errors, not crashes."""
    from lanchat.commands import CommandError

    alice = Member(tmp_path / "a", "alice", [])
    started.append(alice)
    for line, words in (("/join lunch", "starts with '#'"), ("/msg #nowhere hi", "not in"),
                        ("/part #nowhere", "not in"), ("/names", "usage"),
                        ("/kick bob #lunch", "")):
        with pytest.raises(CommandError) as err:
            alice.run(line)
        assert words in str(err.value)


def test_room_labels_are_built_on_the_loop_only(tmp_path: Path,
                                                started: list[Member]) -> None:
    """How rooms are shown is built from tables only the loop changes: a name change seen
    on another thread (the event thread's peer_joined) has it built again on the loop, and
    a label read off the loop (a post from the shell or the page) reads the last map built
    (building it there raised 'dictionary changed size during iteration' now and then)."""
    from waiting import wait_until

    alice = Member(tmp_path / "a", "alice", [])
    started.append(alice)
    alice.run("/join #lunch")
    names = alice.rooms.names
    rid = next(iter(alice.rooms.rooms))
    real = names.refs
    built_on_loop: list[bool] = []

    def refs() -> Any:
        built_on_loop.append(alice.node.runtime.on_loop())
        return real()

    names.refs = refs  # type: ignore[method-assign]
    names.changed()  # from this thread, as the event thread does
    assert names.label(rid) == "#lunch"  # off the loop: the last map
    wait_until(lambda: bool(built_on_loop), "the labels to be built again")
    alice.run("/msg #lunch hello")  # a post reads a label off the loop too
    assert built_on_loop and all(built_on_loop)


def test_a_badly_signed_post_is_taken_from_its_author_but_never_relayed(
        tmp_path: Path, started: list[Member]) -> None:
    """Alice's own session vouches for her posts to bob; bob does not pass on a copy
    whose signature is bad to carol, who joins after alice left."""
    alice = Member(tmp_path / "a", "alice", [])
    started.append(alice)
    bob = Member(tmp_path / "b", "bob", [alice])
    started.append(bob)
    for m in (alice, bob):
        m.run("/join #lunch")
    fill("#lunch", alice, bob)
    alice.run("/msg #lunch signed")
    ident = alice.node.identity
    unsigned = RoomMsg("#lunch", new_message_id(), ident.node_id, ident.key_b64, 2,
                       int(time.time() * 1000), "alice", "unsigned", "AAAA")
    alice.node.queue_frame([bob.id], unsigned)
    assert bob.texts("#lunch", alice, 2) == ["signed", "unsigned"]
    alice.node.close()
    started.remove(alice)
    carol = Member(tmp_path / "c", "carol", [bob])
    started.append(carol)
    carol.run("/join #lunch")
    assert carol.texts("#lunch", alice, 1) == ["signed"]
    assert bob.node.stats()["counters"].get("room_forged", 0) == 1
    assert all(e["text"] != "unsigned" for e in carol.log.named("message"))
