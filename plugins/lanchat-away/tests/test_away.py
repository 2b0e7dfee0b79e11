"""lanchat-away against real in-process nodes on 127.0.0.1."""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lanchat_away import PREFIX, AwayPlugin, is_auto_reply

from lanchat.commands import CommandError

PACKAGE = Path(__file__).resolve().parents[1]


def texts_from(log: Any, sender_id: str) -> list[str]:
    """The texts of the messages `sender_id` sent, in arrival order."""
    return [e["text"] for e in log.named("message") if e["from"]["id"] == sender_id]


def marker(sender: Any, receiver: Any, text: str = "marker") -> None:
    """Send a last direct message and wait for it: everything sent before it has arrived."""
    sender.settle()
    msg_id = sender.node.send(receiver.node.node_id, text)
    receiver.log.wait("message", lambda e: e["id"] == msg_id)


def test_away_answers_each_sender_once(plugged: Callable[..., Any]) -> None:
    """Alice writes to bob twice while he is at lunch; she gets one auto-reply, not two."""
    bob = plugged("bob", AwayPlugin())
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    out = bob.run("/away at lunch, back at 2")
    assert out is not None and out.data == {"away": True, "text": "at lunch, back at 2",
                                            "since": out.data["since"]}
    first = alice.node.send("bob", "are you there?")
    second = alice.node.send("bob", "hello??")
    bob.log.wait("message", lambda e: e["id"] in (first, second), count=2)
    marker(bob, alice)
    assert texts_from(alice.log, bob.node.node_id) == [PREFIX + "at lunch, back at 2", "marker"]


def test_broadcasts_get_no_auto_reply(plugged: Callable[..., Any]) -> None:
    """A message to everyone is not a question to bob; his away bot stays quiet."""
    bob = plugged("bob", AwayPlugin())
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    bob.run("/away")
    msg_id, _ = alice.node.broadcast("lunch anyone?")
    bob.log.wait("message", lambda e: e["id"] == msg_id)
    marker(bob, alice)
    assert texts_from(alice.log, bob.node.node_id) == ["marker"]


def test_two_away_bots_do_not_ping_pong(plugged: Callable[..., Any]) -> None:
    """Alice and bob are both away; bob's auto-reply to alice is never answered by hers."""
    bob = plugged("bob", AwayPlugin())
    alice = plugged("alice", AwayPlugin(), peers=[bob])
    alice.meets(bob)
    alice.run("/away in a meeting")
    bob.run("/away gone fishing")
    sent = alice.run("/msg bob see you tomorrow")
    assert sent is not None
    alice.log.wait("message", lambda e: is_auto_reply(e["text"]))
    alice.settle()
    marker(alice, bob)
    marker(bob, alice)
    assert texts_from(bob.log, alice.node.node_id) == ["see you tomorrow", "marker"]
    assert texts_from(alice.log, bob.node.node_id) == [PREFIX + "gone fishing", "marker"]


def test_back_lists_who_wrote_and_a_new_away_period_replies_again(
        plugged: Callable[..., Any]) -> None:
    """After /back bob sees alice wrote twice; his next /away answers her again."""
    bob = plugged("bob", AwayPlugin())
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    bob.run("/away")
    ids = [alice.node.send("bob", "one"), alice.node.send("bob", "two")]
    bob.log.wait("message", lambda e: e["id"] in ids, count=2)
    bob.settle()
    back = bob.run("/back")
    assert back is not None
    assert [(m["nick"], m["count"]) for m in back.data["missed"]] == [("alice", 2)]
    assert "alice: 2 messages" in back.text
    bob.run("/away again")
    third = alice.node.send("bob", "three")
    bob.log.wait("message", lambda e: e["id"] == third)
    marker(bob, alice)
    assert texts_from(alice.log, bob.node.node_id) == [
        PREFIX + "away from the keyboard", PREFIX + "again", "marker"]


def test_away_again_changes_the_text_but_not_the_period(plugged: Callable[..., Any]) -> None:
    """A second /away only changes the text; whoever was answered is not answered twice."""
    bob = plugged("bob", AwayPlugin())
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    bob.run("/away coffee")
    first = alice.node.send("bob", "hi")
    alice.log.wait("message", lambda e: e["text"] == PREFIX + "coffee")
    changed = bob.run("/away   long   meeting ")
    assert changed is not None and changed.text.startswith("away text changed: long meeting")
    bob.log.wait("message", lambda e: e["id"] == first)
    alice.node.send("bob", "still there?")
    bob.log.wait("message", lambda e: e["text"] == "still there?")
    marker(bob, alice)
    assert texts_from(alice.log, bob.node.node_id) == [PREFIX + "coffee", "marker"]


def test_back_without_away_and_overlong_text_are_refused(plugged: Callable[..., Any]) -> None:
    """/back while present and an away text past 500 characters say what to do instead."""
    bob = plugged("bob", AwayPlugin())
    with pytest.raises(CommandError, match="not away"):
        bob.run("/back")
    with pytest.raises(CommandError, match="longer than 500"):
        bob.run("/away " + "x" * 501)
    assert bob.plugins.failures == []


def test_help_lists_the_commands(plugged: Callable[..., Any]) -> None:
    """/help shows /away and /back with their usage, registered by this plugin."""
    bob = plugged("bob", AwayPlugin())
    out = bob.run("/help")
    assert out is not None
    rows = {row["name"]: row for row in out.data}
    assert rows["away"]["usage"] == "/away [TEXT]"
    assert rows["back"]["plugin"] == "AwayPlugin"


def test_entry_point_names_the_plugin_object() -> None:
    """The package's `lanchat` entry point loads an AwayPlugin, as pip-installed lanchat would."""
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    value = meta["project"]["entry-points"]["lanchat"]["away"]
    module, _, attr = value.partition(":")
    assert isinstance(getattr(importlib.import_module(module), attr), AwayPlugin)
