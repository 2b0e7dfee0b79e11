"""A name is not a person: typed names resolve to one key or are refused with candidates."""

from __future__ import annotations

import pytest

from lanchat.commands import CommandError, CommandRegistry, Context, execute
from lanchat.commands import lanchat_register_commands as builtins
from lanchat.doctor.commands import lanchat_register_commands as doctor_command
from lanchat.naming import AmbiguousName, NameIndex, display_name, resolve
from lanchat.notices import Notices
from lanchat.shell.completer import ShellCompleter
from lanchat.shell.state import PeerView, ShellState
from nodes import Peers

ALICE = "k3f9" + "a" * 48
MALLORY = "q7zz" + "m" * 48
BOB = "b2b2" + "b" * 48
KNOWN = [
    {"id": ALICE, "nick": "alice", "number": 1, "online": False, "trust": "verified"},
    {"id": MALLORY, "nick": "alice", "number": 2, "online": True, "trust": "new"},
    {"id": BOB, "nick": "bob", "number": 3, "online": True, "trust": "tofu"},
]


def test_a_name_held_by_two_keys_is_refused_listing_both_whoever_is_online() -> None:
    """Verified alice is offline, a stranger took her nick: /msg alice picks nobody."""
    with pytest.raises(AmbiguousName) as err:
        resolve("alice", KNOWN)
    text = str(err.value)
    assert "nothing was sent" in text
    assert "1  alice#k3f9  k3f9-aaaa-aaaa-aaaa  verified, offline" in text
    assert "2  alice#q7zz  q7zz-mmmm-mmmm-mmmm  new, online" in text
    assert [c.id for c in err.value.candidates] == [ALICE, MALLORY]


@pytest.mark.parametrize("spelling", ["\u0430lice", "AIice", "ALICE", "a1ice"])
def test_a_look_alike_spelling_is_just_as_ambiguous(spelling: str) -> None:
    """However the name is spelled, a name two keys could mean is refused."""
    known = [KNOWN[0], {**KNOWN[1], "nick": spelling}]
    with pytest.raises(AmbiguousName):
        resolve("alice", known)
    with pytest.raises(AmbiguousName):
        resolve(spelling, known)


def test_numbers_ids_and_nick_hash_prefix_always_work() -> None:
    """The list number, the full id and NICK#PREFIX name exactly one key."""
    assert resolve("1", KNOWN)["id"] == ALICE
    assert resolve(MALLORY, KNOWN)["id"] == MALLORY
    assert resolve("alice#k3f9", KNOWN)["id"] == ALICE
    assert resolve("alice#q7", KNOWN)["id"] == MALLORY
    assert resolve("#q7zz", KNOWN)["id"] == MALLORY
    assert resolve("bob", KNOWN)["id"] == BOB
    assert resolve("b2b2b", KNOWN)["id"] == BOB
    with pytest.raises(LookupError, match="no peer 'bob#k3f9'"):
        resolve("bob#k3f9", KNOWN)  # the prefix is alice's, the name is not
    with pytest.raises(LookupError, match="no peer number 9"):
        resolve("9", KNOWN)


def test_names_on_screen_carry_an_id_suffix_when_shared_and_a_trust_mark() -> None:
    """alice#k3f9 and alice#q7zz, a check mark for the verified one; bob stays bob."""
    names = NameIndex(KNOWN)
    assert names.display(KNOWN[0]) == "alice#k3f9\u2713"
    assert names.display(KNOWN[1]) == "alice#q7zz"
    assert names.display({**KNOWN[2], "trust": "trusted"}) == "bob\u2605"
    assert display_name(KNOWN[2], KNOWN) == "bob"
    twins = [KNOWN[0], {**KNOWN[1], "id": "k3f9" + "z" * 48, "nick": "\u0430lice"}]
    assert NameIndex(twins).display(twins[1]) == "\u0430lice#k3f9z"


def test_the_shell_shows_and_completes_names_that_tell_people_apart() -> None:
    """Message lines, buffer names and completion use the same rule."""
    from prompt_toolkit.document import Document

    from lanchat.events import Event
    from lanchat.shell import render

    state = ShellState("me", "me")
    state.load(KNOWN)
    line = render.event_lines(Event.make("message", id="m", to="direct", text="hi",
                                         **{"from": {"id": MALLORY, "nick": "alice"}}), state)
    assert line is not None and "alice#q7zz" in "".join(t for _, t in line)
    assert state.display(ALICE, "alice") == "alice#k3f9\u2713"
    registry = CommandRegistry()
    builtins(registry)
    completer = ShellCompleter(registry, lambda: state.peers)
    words = {c.text for c in completer.get_completions(Document("/msg al"), None)}
    assert words == {"alice#k3f9", "alice#q7zz"}
    assert isinstance(state.peers[0], PeerView) and state.peers[0].trust == "verified"


def test_warnings_are_said_once_then_at_most_hourly() -> None:
    """The same warning ten times in a minute is said once; again after an hour."""
    notices = Notices()
    said = [notices.say("refused:10.0.0.2", "refused", "m", 1000.0 + i) for i in range(10)]
    assert said == [True] + [False] * 9
    assert notices.say("refused:10.0.0.2", "refused", "m", 1000.0 + 3600) is True
    assert [n.count for n in notices.outstanding(5000.0)] == [11]
    notices.resolve("refused:10.0.0.2")
    assert notices.outstanding(5000.0) == []


def test_a_new_key_taking_a_known_name_warns_once_and_msg_refuses(peers: Peers) -> None:
    """Bob knows alice; a second key calling itself alice connects: a warning naming both
    fingerprints, and /msg alice is refused while /msg alice#<id> goes through."""
    a, b = peers.pair()
    alice, bob, bob_log = a.node, b.node, b.log
    registry = CommandRegistry()
    builtins(registry)
    doctor_command(registry)
    ctx = Context(bob, registry)
    execute(ctx, f"/verify {alice.node_id} yes")
    a.close()
    bob_log.wait("peer_left")
    fake = peers("alice", home=peers.root / "fake", to=[b]).node
    warning = bob_log.wait("warning", lambda e: e["code"] == "name_taken")[0]
    assert warning["peer"] == fake.node_id and warning["known"] == alice.node_id
    assert alice.node_id[:4] in warning["message"].replace(" ", "")
    with pytest.raises(CommandError, match="2 known peers go by 'alice'"):
        execute(ctx, "/msg alice the password is hunter2")
    out = execute(ctx, f"/msg alice#{alice.node_id[:6]} for you only")
    assert out is not None and out.data["to"] == alice.node_id
    assert len(bob_log.named("warning")) == 1
    assert execute(ctx, "/doctor") is None  # it answers with an output event
    report = bob_log.wait("output", lambda e: e["command"] == "/doctor")[0]
    assert "name_taken" in {w["code"] for w in report["data"]["warnings"]}
