"""The one nick rule: ours is refused with a reason, theirs is replaced and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanchat import nicks
from lanchat.cli import main
from lanchat.commands import CommandError, CommandRegistry, Context, execute
from lanchat.commands import lanchat_register_commands as builtins
from lanchat.config import Config, initial_nick
from lanchat.errors import NodeError
from lanchat.nicks import (
    MAX_NICK_BYTES,
    MAX_NICK_CHARS,
    NickError,
    check_nick,
    clean_received_nick,
    confusable,
    nick_problem,
    placeholder,
    replaced_nicks,
    skeleton,
)
from lanchat.node import Node
from lanchat.protocol import NickChange
from nodes import EventLog, make_node

PEER = "k3f9" + "a" * 48

BAD = {
    "zero width space": "ali\u200bce",
    "Hangul filler only": "\u3164",
    "half-width Hangul filler": "\uffa0",
    "variation selector": "bob\ufe0f",
    "tag character": "bob\U000e0041",
    "soft hyphen": "al\u00adice",
    "right-to-left override": "bob\u202eevil",
    "isolate": "\u2067bob",
    "escape": "\x1b[2Jbob",
    "C1 control": "bob\x9b",
    "newline": "bob\nalice",
    "line separator": "bob\u2028",
    "empty": "",
    "only spaces": "   \u3000 ",
    "lone surrogate": "bob\ud800",
    "private use": "bob\ue000",
    "too many characters": "x" * (MAX_NICK_CHARS + 1),
    "too many bytes": "\u6f22" * (MAX_NICK_BYTES // 3 + 1),
    "stacked accents": "a\u0301\u0302\u0303\u0304\u0305",
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_own_nick_is_refused_with_a_reason(name: str) -> None:
    """Every kind of bad nick is refused, and the error says what is wrong."""
    with pytest.raises(NickError) as err:
        check_nick(BAD[name])
    assert "nick" in str(err.value)


def test_good_nicks_are_kept_in_normal_form() -> None:
    """NFC, one space between words, no edge spaces; names in any script are fine."""
    assert check_nick("  Zo\u0065\u0308  van\u3000\u3000Dijk ") == "Zo\u00eb van Dijk"
    assert check_nick("\u6f22\u5b57") == "\u6f22\u5b57"
    assert check_nick("\u0410\u043d\u044f") == "\u0410\u043d\u044f"
    assert check_nick("x" * MAX_NICK_CHARS) == "x" * MAX_NICK_CHARS


def test_a_bad_received_nick_becomes_a_placeholder_with_the_id_and_is_counted() -> None:
    """A peer's bad nick is shown as `unnamed-<id>`, never as an empty or fake name."""
    before = replaced_nicks().get("beacon", 0)
    counters: dict[str, int] = {}
    for raw in [*BAD.values(), None, 7]:
        assert clean_received_nick(raw, PEER, source="beacon", counters=counters) == \
            placeholder(PEER)
    assert placeholder(PEER) == "unnamed-k3f9aaaa"
    assert nick_problem(placeholder(PEER)) is None
    assert replaced_nicks()["beacon"] - before == len(BAD) + 2
    assert counters["bad_nicks"] == len(BAD) + 2
    assert clean_received_nick(" alice ", PEER) == "alice"


@given(st.text(max_size=80))
def test_any_text_is_a_nick_or_a_reason(text: str) -> None:
    """The rule never raises anything but NickError, and what it keeps keeps the rule."""
    try:
        nick = check_nick(text)
    except NickError:
        assert clean_received_nick(text, PEER) == placeholder(PEER)
        return
    assert nick_problem(nick) is None and check_nick(nick) == nick
    assert 0 < len(nick) <= MAX_NICK_CHARS and len(nick.encode()) <= MAX_NICK_BYTES



@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
def test_ascii_nicks_get_the_same_answer_without_the_regex_module(text: str) -> None:
    """ASCII text is checked with stdlib patterns (no regex import at start): the answer
    is the one the Unicode rules give."""
    forbidden, spaces, marks = nicks._unicode_rules()
    normal = spaces.sub(" ", text).strip(" ")
    bad = forbidden.search(normal)
    assert nicks._normal(text) == normal
    problem = nick_problem(text)
    if bad is not None:
        assert problem is not None and f"U+{ord(bad.group()):04X}" in problem
    elif normal and len(normal) <= MAX_NICK_CHARS:
        assert problem is None and marks.search(normal) is None
    else:
        assert problem is not None

def test_look_alike_names_share_a_skeleton() -> None:
    """Cyrillic a, capital I for l, digit 1, case and 'rn' for 'm' look alike (TR 39)."""
    for other in ("\u0430lice", "AIice", "a1ice", "ALICE", "\u0251lice"):
        assert confusable("alice", other), other
    assert confusable("rnallory", "mallory")
    assert not confusable("alice", "alice")
    assert not confusable("alice", "alicia")
    assert skeleton("b\u043eb") == skeleton("bob")


def _table_from_the_package_module() -> dict[str, str]:
    """The prototypes as the package's own parsed table gives them (what lanchat read
    before it derived a small cached copy)."""
    from confusable_homoglyphs.confusables import confusables_data as data

    def strip(text: str) -> str:
        return text.replace("\u200e", "").replace("\u200f", "")

    table = {strip(k): [strip(e["c"]) for e in v] for k, v in data.items()}
    return {char: others[0] for char, others in table.items()
            if len(char) == 1 and len(others) == 1 and (
                len(table.get(others[0], [])) > 1 or len(others[0]) > 1 or others[0] < char)}


def test_the_cached_confusables_table_is_the_packages_and_is_derived_again_when_bad(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The small table kept in the cache folder holds exactly the package's pairs; a
    damaged or cut-short cache file is derived again and rewritten; an unwritable folder
    still gives the right table."""
    from lanchat import confusables

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = _table_from_the_package_module()
    assert len(expected) > 6000
    assert confusables.prototypes() == expected  # derived, then kept
    kept = list((tmp_path / "cache" / "lanchat").glob("confusables-*.txt"))
    assert len(kept) == 1
    assert confusables.prototypes() == expected  # read back
    whole = kept[0].read_text("utf-8")
    kept[0].write_text(whole[:whole.rindex("\x00")], "utf-8")  # cut short at a pair's end
    assert confusables.prototypes() == expected
    assert kept[0].read_text("utf-8") == whole  # derived again and kept
    kept[0].write_text("x", "utf-8")  # damaged: not pairs
    assert confusables.prototypes() == expected
    assert kept[0].read_text("utf-8") == whole
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "lanchat").write_text("a file where the cache folder would be", "utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert confusables.prototypes() == expected  # not kept, still right
    assert (blocked / "lanchat").is_file()


def test_a_bad_own_nick_is_a_clear_error_at_start(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--nick` with an override character: exit 2 and one line naming the character."""
    code = main(["--home", str(tmp_path), "--interface", "127.0.0.1", "--nick",
                 "bob\u202eevil", "id"])
    assert code == 2
    assert "U+202E" in capsys.readouterr().err
    with pytest.raises(NodeError, match="U\\+3164"):
        Node(Config(home=tmp_path, nick="\u3164"))


def test_nick_is_refused_at_slash_nick_and_kept_across_restarts(tmp_path: Path) -> None:
    """/nick with U+202E is refused and changes nothing; a good /nick survives a restart."""
    node, _ = make_node(tmp_path / "a", "alice")
    registry = CommandRegistry()
    builtins(registry)
    ctx = Context(node, registry)
    try:
        with pytest.raises(CommandError, match="U\\+202E.*stays alice"):
            execute(ctx, "/nick bob\u202eevil")
        assert node.nick == "alice"
        out = execute(ctx, "/nick  Zo\u0065\u0308")
        assert out is not None and out.data == {"nick": "Zo\u00eb"}
    finally:
        node.close()
    assert initial_nick(tmp_path / "a", None) == "Zo\u00eb"
    assert initial_nick(tmp_path / "a", "carol") == "carol"


def test_bad_nicks_in_hello_auth_and_nick_frames_become_placeholders(tmp_path: Path) -> None:
    """A modified client whose nick breaks the rule is let in under its placeholder."""
    alice, alice_log = make_node(tmp_path / "a", "alice")
    alice.nick = "ali\u200bce"  # a node that skips the rule: sent in its hello
    mallory = Node(Config(home=tmp_path / "m", nick="mallory", port=0,
                          interfaces=["127.0.0.1"], peers=[f"127.0.0.1:{alice.port}"],
                          mdns=False, beacon=False))
    mallory.nick = "\u3164"  # and in its auth
    mallory_log = EventLog()
    mallory.subscribe(mallory_log)
    mallory.start()
    try:
        joined = alice_log.wait("peer_joined")[0]
        assert joined["peer"]["nick"] == placeholder(mallory.node_id)
        seen = mallory_log.wait("peer_joined")[0]
        assert seen["peer"]["nick"] == placeholder(alice.node_id)
        mallory.send_control(alice.node_id, NickChange("evil\x1b]0;x\x07"))
        mallory.send_control(alice.node_id, NickChange("mallory2"))
        alice_log.wait("peer_updated", lambda e: e["peer"]["nick"] == "mallory2")
        nicks = [e["peer"]["nick"] for e in alice_log.named("peer_updated")]
        assert "evil\x1b]0;x\x07" not in nicks
    finally:
        mallory.close()
        alice.close()
