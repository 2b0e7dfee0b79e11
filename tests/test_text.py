"""Text from peers never puts control or escape sequences on the terminal."""

from __future__ import annotations

import io
import json

import pytest

from lanchat.events import Event
from lanchat.headless import describe
from lanchat.text import safe_line, safe_text

ATTACKS = {
    "clear screen": "\x1b[2J\x1b[H",
    "set title (OSC 0)": "\x1b]0;pwned\x07",
    "hyperlink (OSC 8)": "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\",
    "clipboard (OSC 52)": "\x1b]52;c;cm0gLXJmIC8=\x07",
    "C1 CSI": "\x9b2J",
    "bidi override": "abc\u202edcba",
    "backspace tricks": "safe\x08\x08\x08\x08evil",
    "carriage return": "shown\rhidden",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_no_raw_control_character_survives(attack: str) -> None:
    """Every ESC, C1, BEL, BS, CR and bidi override is replaced by a visible token."""
    for shown in (safe_text(attack), safe_line(attack)):
        assert not any(ord(c) < 0x20 and c not in "\n\t" for c in shown)
        assert not any(0x7F <= ord(c) <= 0x9F for c in shown)
        assert "\u202e" not in shown


def test_escape_shows_as_caret_bracket_and_newlines_stay_in_messages() -> None:
    """ESC is ^[; a message keeps its lines, a one-line field does not."""
    assert safe_text("a\x1b[31mred") == "a^[[31mred"
    assert safe_text("two\nlines") == "two\nlines"
    assert safe_line("two\nlines") == "two^Jlines"
    assert safe_text("x\u202ey") == "x<U+202E>y"


def test_events_for_people_are_sanitised_and_json_is_exact() -> None:
    """The human line escapes the nick and text; the JSON line keeps them exactly."""
    event = Event.make("message", id="1", to="direct", text="hi\x1b]0;pwned\x07",
                       **{"from": {"id": "x", "nick": "ev\x1bil"}})
    line = describe(event)
    assert line is not None and "\x1b" not in line and "\x07" not in line
    assert "^[" in line
    raw = event.to_json()
    assert "\x1b" not in raw and json.loads(raw)["text"] == "hi\x1b]0;pwned\x07"


def test_log_lines_show_peer_text_harmlessly() -> None:
    """The CLI's log formatter turns escapes quoted from peers into visible tokens."""
    import logging

    from lanchat.text import SafeLogFormatter

    record = logging.LogRecord("lanchat.x", logging.INFO, __file__, 1,
                               "refused by %s: %s", ("ev\x1bil", "\x1b]0;pwned\x07"), None)
    line = SafeLogFormatter("%(name)s: %(message)s").format(record)
    assert "\x1b" not in line and "\x07" not in line
    assert line == "lanchat.x: refused by ev^[il: ^[]0;pwned^G"


def test_text_mode_shows_own_lines_once_from_sent_events() -> None:
    """`run` without --json writes our message once, from its `sent` event (whichever face
    sent it), escaped; the answer of the command that queued it is not written too."""
    from lanchat.headless.contract import TextPrinter

    out = io.StringIO()
    printer = TextPrinter(out)
    bob = {"id": "b" * 52, "nick": "b\x1bob"}
    printer.event(Event.make("output", command="/msg bob hi", text="-> bob: hi",
                             data={"id": "m1", "to": "b" * 52, "text": "hi"}))
    printer.event(Event.make("sent", id="m1", **{"from": {"id": "a" * 52, "nick": "alice"}},
                             to="direct", room=None, recipients=[bob], text="hi\x1b[2J\nyou",
                             sent=1.0))
    printer.event(Event.make("sent", id="m2", **{"from": {"id": "a" * 52, "nick": "alice"}},
                             to="room", room="#ops", recipients=[bob, bob], text="all",
                             sent=1.0))
    printer.event(Event.make("output", command="/list", text="no peers", data=[]))
    printer.flush()
    assert out.getvalue() == "-> b^[ob: hi^[[2J\n    | you\n-> #ops (2): all\nno peers\n"


def test_text_mode_names_a_shared_nick_with_its_key() -> None:
    """Two peers called bob: `run`'s text lines say which one, as the shell's do (the id
    suffix), for the second one's arrival, our own line to one and a line from the other;
    the peers are read again after a peer event, not for every line."""
    from lanchat.headless.contract import TextPrinter
    from lanchat.naming import PeerNames

    bob1 = {"id": "k3f9" + "a" * 48, "nick": "bob", "trust": "tofu"}
    bob2 = {"id": "q7xz" + "b" * 48, "nick": "bob", "trust": "tofu", "number": 2}
    known = [bob1]
    reads: list[int] = []

    def peers() -> list[dict[str, str]]:
        reads.append(len(known))
        return list(known)

    names = PeerNames(peers)  # as `run` wires it: the peers read again on peer events only
    out = io.StringIO()
    printer = TextPrinter(out, names.display)

    def event(name: str, **fields: object) -> None:
        e = Event.make(name, **fields)
        names.seen(e)
        printer.event(e)

    def message(sender: dict[str, object], msg_id: str, text: str) -> None:
        event("message", id=msg_id, **{"from": {"id": sender["id"], "nick": "bob"}},
              to="direct", text=text, sent=1.0, seq=1, room=None)

    message(bob1, "m0", "alone")  # the only bob known (table read once for both lines)
    event("sent", id="m1", **{"from": {"id": "c" * 52, "nick": "alice"}},
          to="direct", room=None, recipients=[bob1], text="lonely", sent=1.0)
    known.append(bob2)
    event("peer_joined", peer=bob2)
    event("sent", id="m2", **{"from": {"id": "c" * 52, "nick": "alice"}},
          to="direct", room=None, recipients=[bob1], text="hi", sent=1.0)
    message(bob2, "m3", "yo")
    printer.flush()
    lines = out.getvalue().splitlines()
    assert lines[0] == "<bob> alone" and lines[1] == "-> bob: lonely"
    assert lines[2].startswith("-- bob#q7xz") and lines[2].endswith(" [2] is here")
    assert lines[3].startswith("-> bob#k3f9") and lines[3].endswith(": hi")
    assert lines[4].startswith("<bob#q7xz") and lines[4].endswith(" yo")
    assert reads == [1, 2]  # once before the peer event, once after: not per line
