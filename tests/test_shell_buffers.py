# ruff: noqa: F811 - the fixtures imported from test_shell are parameters here
"""The shell's buffers in-process: a recorded terminal, pipe input, a real bob on 127.0.0.1."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from test_shell import ShellRun, alice_shell  # noqa: F401 - fixtures

from lanchat import rooms
from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node
from lanchat.shell import render
from lanchat.shell.buffers import NOTICES, Buffers, Kind, Level, Line, Sent
from lanchat.shell.paste import PasteGuardParser
from lanchat.shell.state import ShellState, TransferView
from nodes import EventLog


@pytest.fixture
def bob(tmp_path: Path) -> Iterator[tuple[Node, EventLog]]:
    """Bob on 127.0.0.1, with rooms (alice's shell has them through open_node)."""
    config = Config(home=tmp_path / "bob", nick="bob", port=0, interfaces=["127.0.0.1"],
                    mdns=False, beacon=False)
    node = Node(config)
    rooms.attach(node)
    log = EventLog()
    node.subscribe(log)
    node.start()
    yield node, log
    node.close()


ALT = "\x1b"
ALT_LEFT, ALT_RIGHT = "\x1b[1;3D", "\x1b[1;3C"
CLEAR = "\x1b[2J"


def screen_after(run: ShellRun, mark: int) -> str:
    """What the terminal got since `mark`."""
    assert run.screen is not None
    return run.screen.text()[mark:]


def plain(text: str) -> str:
    """Terminal output without its escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def mark(run: ShellRun) -> int:
    """A position in the recorded terminal output."""
    assert run.screen is not None
    return len(run.screen.text())


def test_direct_messages_have_their_own_buffer_reached_by_alt_keys_and_buffer(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """Bob's direct line waits unread in his buffer while alice reads `all`; Alt-3 shows
    it on a cleared screen; Alt-Left, Alt-Right, Alt-1 and /buffer move between buffers;
    a plain line typed in bob's buffer goes to bob alone."""
    run = alice_shell(record=True)
    bob[0].send("alice", "psst, just you")
    bob[0].broadcast("hello everyone")
    run.wait_screen("hello everyone")
    run.wait_for(lambda: run.shell.buffers.unread_by_key() == {bob[0].node_id: 1},
                 "one unread in bob's buffer")
    assert "psst" not in screen_after(run, 0)
    at = mark(run)
    run.type(ALT + "3")
    run.wait_for(lambda: "psst, just you" in screen_after(run, at), "bob's buffer repainted")
    assert CLEAR in screen_after(run, at)
    assert run.shell.buffers.current == bob[0].node_id
    assert run.shell.buffers.unread_by_key() == {}
    run.type("only for bob\r")
    bob[1].wait("message", lambda e: e["text"] == "only for bob" and e["to"] == "direct")
    run.type(ALT_LEFT)
    run.wait_for(lambda: run.shell.buffers.current == "all", "Alt-Left to all")
    run.type(ALT_RIGHT)
    run.wait_for(lambda: run.shell.buffers.current == bob[0].node_id, "Alt-Right to bob")
    run.type(ALT + "1")
    run.wait_for(lambda: run.shell.buffers.current == "lanchat", "Alt-1 to notices")
    at = mark(run)
    run.type("nowhere to go\r")
    run.wait_for(lambda: "shows notices only" in screen_after(run, at), "refusal")
    run.type("/buffer bob\r")
    run.wait_for(lambda: run.shell.buffers.current == bob[0].node_id, "/buffer bob")
    run.type("/buffer 2\r")
    run.wait_for(lambda: run.shell.buffers.current == "all", "/buffer 2")
    assert not any(e["text"] == "nowhere to go" for e in bob[1].named("message"))


def test_mentions_mark_the_hotlist_and_outgoing_lines_show_delivery(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """A broadcast naming alice while she reads notices marks `all` with `!`; her own
    lines carry ✓ once bob has stored them (and 1/1 ✓ for everyone)."""
    from lanchat.shell.toolbar import create_toolbar_tokens_func

    run = alice_shell(record=True)
    run.type(ALT + "1")
    run.wait_for(lambda: run.shell.buffers.current == "lanchat", "notices")
    bob[0].broadcast("lunch, Alice?")
    draw = create_toolbar_tokens_func(run.shell.state, run.shell.buffers)
    run.wait_for(lambda: "2:all(1!)" in "".join(t for _, t in draw()), "a mention mark")
    run.type(ALT + "a")
    run.wait_for(lambda: run.shell.buffers.current == "all", "Alt-A to the mention")
    at = mark(run)
    run.type("/msg bob are you there\r")
    bob[1].wait("message", lambda e: e["text"] == "are you there")
    # the mark comes with the line, or (on a slow machine) in a line of its own
    run.wait_for(lambda: "are you there ✓" in plain(screen_after(run, at))
                 or "✓ delivered to bob" in plain(screen_after(run, at)),
                 "the line with its delivered mark")
    run.type("yes all\r")
    run.wait_for(lambda: "yes all 1/1 ✓" in plain(screen_after(run, at))
                 or "✓ delivered to 1 of 1" in plain(screen_after(run, at)),
                 "1/1 ✓ on the broadcast")


def test_a_line_to_an_absent_peer_says_delivered_when_it_arrives(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """Alice writes to bob while he is away: her line shows … at once, and a ✓ line
    follows when bob is back and has stored it."""
    from nodes import make_node

    run = alice_shell(record=True)
    run.type("/chat bob\r")
    run.wait_for(lambda: run.shell.buffers.current == bob[0].node_id, "bob's buffer")
    home, port = bob[0].config.home, bob[0].port
    bob[0].close()
    run.wait_for(lambda: run.shell.state.online() == 0, "bob gone")
    at = mark(run)
    run.type("when you are back\r")
    run.wait_for(lambda: "when you are back\x1b[0;90m …" in screen_after(run, at),
                 "the line marked not yet delivered")
    again, log = make_node(home, "bob", port=port)
    try:
        log.wait("message", lambda e: e["text"] == "when you are back", timeout=30)
        run.wait_for(lambda: "✓ delivered to bob" in screen_after(run, at),
                     "the late delivered line", timeout=15)
    finally:
        again.close()


def test_unread_counts_survive_a_restart(alice_shell: Callable[..., ShellRun],
                                         bob: tuple[Node, EventLog]) -> None:
    """Two lines from bob stored while alice's shell runs in another buffer are unread in
    the next shell too (from the store); read once, they stay read after another restart."""
    run = alice_shell()
    bob[0].send("alice", "first")
    bob[0].send("alice", "second")
    run.wait_for(lambda: run.shell.buffers.unread_by_key() == {bob[0].node_id: 2},
                 "two unread")
    run.type("\x04")
    run.thread.join(10)
    run = alice_shell(record=True)
    run.wait_for(lambda: not run.shell.buffers.loading, "the scrollback read")
    assert run.shell.buffers.unread_by_key() == {bob[0].node_id: 2}
    buf = run.shell.buffers.get(bob[0].node_id)
    assert buf is not None
    texts = [ln.fragments[-1][1] for ln in buf.lines]
    assert texts.index("first") < texts.index("second")
    run.type(ALT + "3")
    run.wait_screen("second")
    run.type("\x04")
    run.thread.join(10)
    run = alice_shell()
    run.wait_for(lambda: not run.shell.buffers.loading, "the scrollback read")
    assert run.shell.buffers.unread_by_key() == {}


def test_an_over_long_paste_is_refused_at_once_and_a_short_one_is_kept(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """A 2 MB bracketed paste is refused with its size and leaves the line empty; a short
    multi-line paste lands in the line and is sent as one message."""
    run = alice_shell(record=True)
    run.type("\x1b[200~" + "x" * 2_000_000 + "\x1b[201~")
    run.wait_screen("paste of 2,000,000 characters refused")
    assert run.shell.session.default_buffer.text == ""
    run.type("\x1b[200~two\r\nlines\x1b[201~")
    run.wait_for(lambda: run.shell.session.default_buffer.text == "two\nlines", "the paste")
    run.type("\r")
    bob[1].wait("message", lambda e: e["text"] == "two\nlines")


def test_the_paste_parser_keeps_keys_around_a_paste_and_splits_marks() -> None:
    """Keys before and after a paste stay keys; marks split across reads are found; a lone
    Escape comes out at flush."""
    keys: list[tuple[str, str]] = []
    parser = PasteGuardParser(lambda k: keys.append((str(k.key), k.data)), limit=5)
    for chunk in ("a\x1b[20", "0~hello wor", "ld\x1b[2", "01~b", "\x1b"):
        parser.feed(chunk)
    assert keys == [("a", "a"), ("Keys.BracketedPaste", "hello "), ("b", "b")]
    assert parser.pasted_chars == len("hello world")
    parser.flush()
    assert keys[-1][0] == "Keys.Escape"


def test_clear_empties_the_screen_of_this_buffer_only(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """/clear clears the screen and this buffer's lines; the history keeps them."""
    run = alice_shell(record=True)
    bob[0].broadcast("old news")
    run.wait_screen("old news")
    at = mark(run)
    run.type("/clear\r")
    run.wait_for(lambda: CLEAR in screen_after(run, at), "the screen cleared")
    buf = run.shell.buffers.get("all")
    assert buf is not None and not any("old news" in str(ln.fragments) for ln in buf.lines)
    run.type("/history\r")
    run.wait_for(lambda: "<- bob: old news" in screen_after(run, at), "/history keeps it")


def test_a_command_answer_that_comes_later_shows_where_you_are(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """An `output` event (a command that answers from its own thread, like /doctor) is
    written in the current buffer under the command's name."""
    run = alice_shell(record=True)
    run.type(ALT + "1")
    run.wait_for(lambda: run.shell.buffers.current == "lanchat", "notices")
    at = mark(run)
    run.shell.node.emit("output", command="/doctor", text="node alice\n  all good",
                        data={})
    run.wait_for(lambda: "> /doctor\nnode alice" in plain(screen_after(run, at)).replace(
        "\r", ""), "the answer")


def test_history_names_the_recipient_of_outgoing_lines(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """/history shows `-> bob` on alice's direct line and `-> everyone` on a broadcast."""
    run = alice_shell(record=True)
    run.type("/msg bob for you\r")
    bob[1].wait("message", lambda e: e["text"] == "for you")
    run.type("to all\r")
    bob[1].wait("message", lambda e: e["text"] == "to all")
    # bob may have it before alice's own commit (a message leaves before it is stored)
    run.wait_for(lambda: any(r["text"] == "to all" for r in run.shell.node.history()),
                 "alice to store her broadcast")
    at = mark(run)
    run.type("/history\r")
    run.wait_for(lambda: "-> everyone: to all" in screen_after(run, at), "/history")
    assert "-> bob: for you" in screen_after(run, at)
    assert "-> alice" not in screen_after(run, at)


def test_room_events_make_room_buffers(alice_shell: Callable[..., ShellRun],
                                       bob: tuple[Node, EventLog]) -> None:
    """room_joined opens #lunch; its messages count there (a mention with `!`); members
    and the topic show in it; room_left keeps it marked as left."""
    run = alice_shell(record=True)
    node = run.shell.node
    bob_ref = {"id": bob[0].node_id, "nick": "bob"}
    node.emit("room_joined", room="#lunch")
    node.emit("member_joined", room="#lunch", member=bob_ref)
    node.emit("message", id="r1", **{"from": bob_ref}, to="room", room="#lunch",
              text="pizza, alice?", sent=time.time())
    node.emit("topic", room="#lunch", topic="where to eat", by=bob_ref)
    run.wait_for(lambda: run.shell.buffers.unread_by_key() == {"#lunch": 2}, "unread")
    view = next(v for v in run.shell.buffers.views if v.key == "#lunch")
    assert view.kind is Kind.ROOM and view.level is Level.HIGHLIGHT
    assert "pizza" not in screen_after(run, 0)
    run.type("/buffer #lunch\r")
    run.wait_for(lambda: "<bob> pizza, alice?" in plain(screen_after(run, 0)), "the line")
    run.wait_screen("topic of #lunch: where to eat (set by bob)")
    assert "bob joined #lunch" in screen_after(run, 0)
    node.emit("room_left", room="#lunch")
    run.wait_for(lambda: any(v.parted for v in run.shell.buffers.views if v.key == "#lunch"),
                 "#lunch marked as left")


def test_a_room_has_its_buffer_delivery_counts_and_scrollback_after_a_restart(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """/join #lunch opens its buffer; a plain line there reaches bob in the room and shows
    1/1 ✓; bob's line naming alice while she reads `all` is unread with `!`; after a
    restart the room's lines come back from the store, the unread one still unread."""
    bob_rooms = rooms.rooms_of(bob[0])
    assert bob_rooms is not None
    bob_rooms.join("#lunch")
    run = alice_shell(record=True)
    run.type("/join #lunch\r")
    run.wait_for(lambda: run.shell.buffers.current == "#lunch", "the room's buffer")
    at = mark(run)
    run.type("hello room\r")
    bob[1].wait("message", lambda e: e.fields.get("room") == "#lunch"
                and e["text"] == "hello room", timeout=15)
    run.wait_for(lambda: "hello room 1/1 ✓" in plain(screen_after(run, at))
                 or "✓ delivered to 1 of 1" in plain(screen_after(run, at)), "1/1 ✓")
    bob_rooms.post("#lunch", "pizza?")
    run.wait_for(lambda: "<bob> pizza?" in plain(screen_after(run, at)), "bob's line")
    run.type(ALT + "2")
    run.wait_for(lambda: run.shell.buffers.current == "all", "all")
    bob_rooms.post("#lunch", "alice, still there?")
    run.wait_for(lambda: run.shell.buffers.unread_by_key() == {"#lunch": 1}, "unread")
    assert any(v.level is Level.HIGHLIGHT for v in run.shell.buffers.views
               if v.key == "#lunch")
    run.type("\x04")
    run.thread.join(10)
    run = alice_shell(record=True)
    run.wait_for(lambda: not run.shell.buffers.loading, "the scrollback read")
    assert run.shell.buffers.unread_by_key() == {"#lunch": 1}
    run.type("/buffer #lunch\r")
    run.wait_for(lambda: "alice, still there?" in plain(screen_after(run, 0)), "scrollback")
    assert "hello room 1/1 ✓" in plain(screen_after(run, 0))


def test_an_ignored_peer_stays_out_of_buffers_and_scrollback(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """After /ignore bob, his line is stored but neither shown nor counted, and the next
    shell does not bring it back from the store."""
    run = alice_shell()
    run.type("/ignore bob\r")
    run.wait_for(lambda: bool(run.shell.node.ignored()), "bob ignored")
    bob[0].broadcast("noise")
    run.wait_for(lambda: any(r["text"] == "noise" for r in run.shell.node.history(None, 5)),
                 "the line stored")
    run.type("\x04")
    run.thread.join(10)
    run = alice_shell()
    run.wait_for(lambda: not run.shell.buffers.loading, "the scrollback read")
    everyone = run.shell.buffers.get("all")
    assert everyone is not None
    assert not any("noise" in str(ln.fragments) for ln in everyone.lines)
    assert run.shell.buffers.unread_by_key() == {}


# -- without a node ----------------------------------------------------------------------


def test_two_peers_called_bob_get_buffers_told_apart_by_id() -> None:
    """Two keys using one nick: their buffers and lines carry the id suffix of the naming
    rule, so alice can tell which bob she reads."""
    from prompt_toolkit.output import DummyOutput
    from prompt_toolkit.styles import Style

    from lanchat.shell.printer import Printer
    from lanchat.shell.router import Router

    state = ShellState("a" * 52, "alice")
    state.load([{"id": "b" * 52, "nick": "bob", "number": 1, "online": True},
                {"id": "c" * 52, "nick": "bob", "number": 2, "online": True}])
    buffers = Buffers()
    router = Router(state, buffers, Printer(DummyOutput(), Style([])), lambda: None)
    for sender in ("b" * 52, "c" * 52):
        router.on_event(Event.make("message", id=sender[:4], to="direct", text="hi",
                                   **{"from": {"id": sender, "nick": "bob"}}))
    names = [v.name for v in buffers.views if v.kind is Kind.DIRECT]
    assert len(names) == 2 and all(n.startswith("bob#") for n in names)
    assert names[0] != names[1]


def test_two_rooms_of_one_name_get_two_buffers_and_an_invitation_is_a_notice() -> None:
    """Rooms are keyed by id: two #team rooms are two buffers, titled with whose each is;
    an invitation is a notice naming the inviter with its trust mark, joining nothing."""
    from prompt_toolkit.output import DummyOutput
    from prompt_toolkit.styles import Style

    from lanchat.shell.printer import Printer
    from lanchat.shell.router import Router

    state = ShellState("a" * 52, "alice")
    buffers = Buffers()
    router = Router(state, buffers, Printer(DummyOutput(), Style([])), lambda: None)
    bob, carol = "b" * 52, "c" * 52
    for creator, nick in ((bob, "bob"), (carol, "carol")):
        router.on_event(Event.make(
            "room_joined", room=f"#team ({nick}#{creator[:4]})", room_id=f"#team@{creator}",
            kind="private", creator=creator, topic="", reason="invited", members=[]))
        router.on_event(Event.make(
            "message", id=nick, to="room", room=f"#team ({nick}#{creator[:4]})",
            room_id=f"#team@{creator}", text="hi", **{"from": {"id": creator, "nick": nick}}))
    rooms = {v.key: v.name for v in buffers.views if v.kind is Kind.ROOM}
    assert rooms == {f"#team@{bob}": "#team (bob#bbbb)", f"#team@{carol}": "#team (carol#cccc)"}
    router.on_event(Event.make(
        "room_invited", room="#plans", room_id=f"#plans@{bob}", kind="private", creator=bob,
        by={"id": bob, "nick": "bob"}, trust="verified", members=3, expires=0.0))
    notices = buffers.get(NOTICES)
    assert notices is not None
    text = "".join(t for line in notices.lines for _, t in line.fragments)
    assert "bob\u2713 [bbbbbbbb] invites you to the private room #plans" in text
    assert "/join #plans" in text
    assert len([v for v in buffers.views if v.kind is Kind.ROOM]) == 2


def test_transfer_endings_are_said_in_words() -> None:
    """Declined with the reason, cancelled by whom, expired, interrupted; names, not ids."""
    state = ShellState("a" * 52, "alice")
    state.unfinished = MappingProxyType({"t1": TransferView("t1", "report.pdf", "b" * 52,
                                                            "bob", "out", True)})

    def said(**fields: object) -> str:
        line = render.event_lines(Event("file_failed", MappingProxyType(
            {"transfer": "t1", **fields})), state)
        assert line is not None
        return "".join(t for _, t in line)

    assert said(reason="declined", detail="not now", direction="out").endswith(
        "bob declined report.pdf: not now")
    assert said(reason="declined", direction="in").endswith("you declined report.pdf from bob")
    assert said(reason="cancelled by peer", direction="out").endswith(
        "bob cancelled report.pdf")
    assert said(reason="cancelled", direction="out").endswith("you cancelled report.pdf to bob")
    assert said(reason="timeout", direction="out").endswith(
        "bob did not answer the offer of report.pdf in time")
    assert "interrupted (peer gone); it goes on where it stopped" in said(
        reason="peer gone", direction="in", resumable=True)
    assert "failed: disk full" in said(reason="disk full", direction="in")
    assert "t1" not in said(reason="declined", direction="out")


def test_read_markers_and_delivery_marks_in_the_model(tmp_path: object) -> None:
    """A buffer counts lines added while another is current; switching reads them; the
    markers are written to the home and read back, the stored lines go before those that
    arrived meanwhile, once each; a group mark counts recipients, even acks that come
    before the line; a damaged file is ignored."""
    from pathlib import Path

    home = Path(str(tmp_path))
    buffers = Buffers(home)
    assert buffers.add("b", Kind.DIRECT, "bob", Line([("", "hi")]), incoming_id="m1",
                       level=Level.PRIVATE) is False
    assert buffers.unread_by_key() == {"b": 1}
    buffers.switch("b")
    assert buffers.unread_by_key() == {}
    buffers.save()
    again = Buffers(home)
    assert [v.name for v in again.views] == ["lanchat", "all", "bob"]
    # m3 arrives as an event while the store is read (and the store has it too)
    again.add("b", Kind.DIRECT, "bob", Line([("", "live")]), incoming_id="m3")
    again.load("b", Kind.DIRECT, "bob", Line([("", "hi")]), incoming_id="m1")
    again.load("b", Kind.DIRECT, "bob", Line([("", "new")]), incoming_id="m2")
    again.load("b", Kind.DIRECT, "bob", Line([("", "live")]), incoming_id="m3")
    again.loaded()
    assert again.unread_by_key() == {"b": 2}
    buf = again.get("b")
    assert buf is not None and [ln.fragments[0][1] for ln in buf.lines] == [
        "hi", "new", "live"]
    sent = Sent("s1", ["x", "y", "z"], group=True, key="all")
    line = Line([("", "hey")], sent, hold_until=time.monotonic() + 60)
    again.add("all", Kind.EVERYONE, "all", line)
    assert line.held(time.monotonic()) and sent.mark() == "0/3"
    again.delivered("s1", "x")
    again.delivered("s1", "y")
    assert sent.mark() == "2/3"
    again.delivered("s1", "z")
    assert sent.mark() == "3/3 ✓" and not line.held(time.monotonic())
    # an ack can beat the command that sent the message back: the mark is kept for it
    assert again.delivered("s2", "x") is None
    early = Sent("s2", ["x"], group=False, key="b")
    again.add("b", Kind.DIRECT, "bob", Line([("", "quick")], early))
    assert early.mark() == "✓"
    (home / "buffers.json").write_text("{not json")
    damaged = Buffers(home)
    assert [v.name for v in damaged.views] == ["lanchat", "all"]
    assert damaged.unread_by_key() == {}


def _texts(run: ShellRun, key: str) -> list[str]:
    """The lines of one buffer as plain text."""
    buf = run.shell.buffers.get(key)
    return [] if buf is None else ["".join(t for _, t in ln.render()) for ln in buf.lines]


def test_own_lines_are_drawn_once_from_the_node_whichever_face_sent_them(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """What another face of alice's node sends (the web window calls `Node.send` and
    `Rooms.post` from its own thread; so may a plugin) shows in her shell's buffer live,
    with its mark, once; a line typed in the shell shows once too, and echoed where it was
    typed when that is another buffer."""
    run = alice_shell(record=True)
    node, bob_id = run.shell.node, bob[0].node_id
    run.type("/chat bob\r")
    run.wait_for(lambda: run.shell.buffers.current == bob_id, "bob's buffer")
    at = mark(run)
    threading.Thread(target=node.send, args=(bob_id, "from another face")).start()
    bob[1].wait("message", lambda e: e["text"] == "from another face")
    run.wait_for(lambda: "from another face ✓" in plain(screen_after(run, at))
                 or "✓ delivered to bob" in plain(screen_after(run, at)), "the line, ✓")
    run.type("typed in the shell\r")
    bob[1].wait("message", lambda e: e["text"] == "typed in the shell")
    run.wait_for(lambda: "typed in the shell ✓" in plain(screen_after(run, at))
                 or plain(screen_after(run, at)).count("✓ delivered to bob") == 2, "✓")
    mine = [t for t in _texts(run, bob_id) if "<alice>" in t]
    assert [t.split("> ", 1)[1] for t in mine] == ["from another face ✓", "typed in the shell ✓"]
    # a room post from another face; a direct line typed in the room's buffer
    alice_rooms, bob_rooms = rooms.rooms_of(node), rooms.rooms_of(bob[0])
    assert alice_rooms is not None and bob_rooms is not None
    bob_rooms.join("#ops")
    run.type("/join #ops\r")
    run.wait_for(lambda: run.shell.buffers.current == "#ops", "the room's buffer")
    run.wait_for(lambda: any(m["id"] == bob_id for m in alice_rooms.info("#ops")["members"]),
                 "bob in alice's view of #ops")
    threading.Thread(target=alice_rooms.post, args=("#ops", "posted elsewhere")).start()
    bob[1].wait("message", lambda e: e["text"] == "posted elsewhere" and e["room"] == "#ops")
    run.type("/msg bob from the room\r")
    bob[1].wait("message", lambda e: e["text"] == "from the room")
    run.wait_for(lambda: any("[alice -> bob] from the room" in t
                             for t in _texts(run, "#ops")), "the echo in #ops")
    assert sum("posted elsewhere" in t for t in _texts(run, "#ops")) == 1
    assert sum("from the room" in t for t in _texts(run, bob_id)) == 1
    assert sum("from the room" in t for t in _texts(run, "#ops")) == 1
