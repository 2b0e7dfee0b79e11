"""Slash commands against two real in-process nodes: what a user types, what they see."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanchat.commands import CommandError, Context, execute, first_word
from tests.nodes import EventLog, Peers, make_node

Pair = tuple[Context, EventLog, Context, EventLog]


@pytest.fixture
def pair(peers: Peers) -> Pair:
    """Alice's and bob's command contexts, connected (the shared two-node fixture)."""
    alice, bob = peers.pair()
    return alice.ctx, alice.log, bob.ctx, bob.log


def run(ctx: Context, line: str) -> str:
    out = execute(ctx, line)
    assert out is not None
    return out.text


def test_msg_chat_and_plain_lines_reach_the_right_peer(pair: Pair) -> None:
    """/msg names a peer; /chat makes plain lines go there; /chat all back to everyone."""
    alice, _, _, bob_log = pair
    assert run(alice, "/msg bob hello  there") == "-> bob: hello  there"
    bob_log.wait("message", lambda e: e["text"] == "hello  there")
    run(alice, "/chat 1")
    run(alice, "just us")
    assert bob_log.wait("message", lambda e: e["text"] == "just us")[0]["to"] == "direct"
    run(alice, "/chat all")
    run(alice, "everyone")
    assert bob_log.wait("message", lambda e: e["text"] == "everyone")[0]["to"] == "broadcast"
    run(alice, "/me waves")
    bob_log.wait("message", lambda e: e["text"] == "/me waves")


def test_quoted_peer_names_and_bad_commands_give_clear_errors(pair: Pair) -> None:
    """Quotes work as in a shell; unknown commands and peers say what to do."""
    alice, _, _, _ = pair
    assert first_word('"bob smith" hi there') == ("bob smith", "hi there")
    with pytest.raises(CommandError, match="unknown command /nope; /help"):
        execute(alice, "/nope")
    with pytest.raises(CommandError, match="no peer 'carol'"):
        execute(alice, "/msg carol hi")
    with pytest.raises(CommandError, match="usage: /msg"):
        execute(alice, "/msg bob")
    with pytest.raises(CommandError, match="no closing quotation"):
        execute(alice, '/msg "bob hi')


def test_verify_shows_the_same_code_on_both_sides_and_marks_the_peer(pair: Pair) -> None:
    """Both read the same digits aloud; 'yes' marks the peer verified in /whois."""
    alice, _, bob, _ = pair
    code_a = execute(alice, "/verify bob")
    code_b = execute(bob, "/verify alice")
    assert code_a is not None and code_b is not None
    assert code_a.data["code"] == code_b.data["code"]
    assert len(code_a.data["code"].replace(" ", "")) == 30
    run(alice, "/verify bob yes")
    assert "trust:       verified" in run(alice, "/whois bob")


def test_search_finds_words_in_either_direction(pair: Pair) -> None:
    """Full-text search over the history, prefixes and accents included."""
    alice, alice_log, bob, bob_log = pair
    run(alice, "/msg bob the café on Main street")
    bob_log.wait("message")
    run(bob, "/msg alice see you at the cafe")
    alice_log.wait("message")
    bob_log.wait("delivered")  # stored by bob too (alice may have it before bob's commit)
    out = execute(bob, "/search cafe")
    assert out is not None and len(out.data) == 2
    out = execute(bob, "/search mai")
    assert out is not None and [r["text"] for r in out.data] == ["the café on Main street"]
    assert "nothing matches" in run(bob, "/search zebra")


def test_forget_drops_the_peer_and_trust_marks_it(pair: Pair) -> None:
    """/trust marks a peer; /forget removes it from the list."""
    alice, _, _, _ = pair
    assert run(alice, "/trust bob") == "bob is trusted"
    assert "trust:       trusted" in run(alice, "/whois bob")
    run(alice, "/forget bob")
    listing = execute(alice, "/list")
    assert listing is not None and all(p["nick"] != "bob" or p["trust"] == "new"
                                       for p in listing.data)


def test_help_lists_every_command_with_its_usage(pair: Pair) -> None:
    """/help shows all commands; /help NAME shows one."""
    alice, _, _, _ = pair
    out = execute(alice, "/help")
    assert out is not None
    names = {c["name"] for c in out.data}
    assert {"msg", "all", "chat", "me", "list", "whois", "verify", "trust", "forget",
            "history", "search", "nick", "help", "plugins", "doctor", "quit"} <= names
    assert run(alice, "/help msg").startswith("/msg PEER TEXT")


def settle(node: object, log: EventLog) -> None:
    """Wait until every event the node queued so far has reached its listeners."""
    token = object()
    node.emit("test_probe", token=token)  # type: ignore[attr-defined]
    log.wait("test_probe", lambda e: e["token"] is token)


def test_a_leading_space_before_the_slash_still_runs_the_command(pair: Pair) -> None:
    """' /msg bob hi' is a command, not chat; '  //x' sends '/x'; other text stays as typed."""
    alice, _, _, bob_log = pair
    assert run(alice, " /msg bob hi") == "-> bob: hi"
    assert run(alice, "\t/msg bob tabbed") == "-> bob: tabbed"
    bob_log.wait("message", lambda e: e["text"] == "tabbed")
    run(alice, "  //slash text")
    bob_log.wait("message", lambda e: e["text"] == "/slash text")
    run(alice, "   indented chat")
    bob_log.wait("message", lambda e: e["text"] == "   indented chat")
    assert not [e for e in bob_log.named("message") if "msg bob" in e["text"]]


def test_ignored_peers_are_stored_not_shown_and_stay_ignored_after_a_restart(
        pair: Pair, tmp_path: Path) -> None:
    """Bob ignores alice: her lines are acked and kept in his history, but no message event
    reaches his screen or plugins, across a restart, until /unignore."""
    alice, alice_log, bob, bob_log = pair
    assert run(bob, "/ignore alice").startswith("ignoring alice")
    assert run(bob, "/ignore") .startswith("ignored: alice")
    out = execute(alice, "/msg bob psst")
    assert out is not None
    alice_log.wait("delivered", lambda e: e["id"] == out.data["id"])
    settle(bob.node, bob_log)
    assert not [e for e in bob_log.named("message") if e["text"] == "psst"]
    assert [r["text"] for r in bob.node.history("alice", 5)] == ["psst"]

    # Bob restarts on the same home: alice is still ignored.
    bob.node.close()
    node, log = make_node(tmp_path / "bob", "bob", port=bob.node.port)
    bob = Context(node, bob.registry, bob.plugins)
    try:
        log.wait("peer_joined")
        out = execute(alice, "/msg bob still there?")
        assert out is not None
        alice_log.wait("delivered", lambda e: e["id"] == out.data["id"])
        settle(node, log)
        assert not log.named("message")
        assert run(bob, "/unignore alice").startswith("alice is shown again")
        run(alice, "/msg bob hello again")
        assert log.wait("message")[0]["text"] == "hello again"
    finally:
        node.close()
