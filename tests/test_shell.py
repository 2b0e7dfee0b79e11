"""The shell in-process: pipe input, a recorded terminal, a real bob node on 127.0.0.1."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.data_structures import Size
from prompt_toolkit.document import Document
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput, Output
from prompt_toolkit.output.vt100 import Vt100_Output

from lanchat.commands import build_registry
from lanchat.config import Config
from lanchat.events import Event
from lanchat.hookspecs import hookimpl
from lanchat.node import Node
from lanchat.plugins import Plugins
from lanchat.shell import render
from lanchat.shell.app import Shell
from lanchat.shell.buffers import Buffers
from lanchat.shell.completer import ShellCompleter
from lanchat.shell.local_commands import add_shell_commands
from lanchat.shell.state import PeerView, ShellState
from nodes import EventLog, make_node, wait_until

ESC_ATTACK = "\x1b[2J\x1b]0;pwned\x07"


class Screen(io.StringIO):
    """What the shell wrote to its terminal (a thread-safe StringIO)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            return super().write(s)

    def text(self) -> str:
        """Everything written so far."""
        with self.lock:
            return self.getvalue()


class ShellRun:
    """A Shell for alice on a thread, typed into through a pipe."""

    def __init__(self, shell: Shell, inp: PipeInput, screen: Screen | None) -> None:
        self.shell = shell
        self.inp = inp
        self.screen = screen
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with create_app_session(input=self.inp, output=self.shell.session.output):
            self.rc = self.shell.run()

    def type(self, text: str) -> None:
        """Keys as a terminal would send them (Enter is \\r)."""
        self.inp.send_text(text)

    def wait_for(self, pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Wait until `pred` holds, or fail saying `what` with the screen's tail."""
        def tail() -> str:
            return f"screen tail: {self.screen.text()[-800:] if self.screen else ''!r}"

        wait_until(pred, what, timeout, state=tail)

    def wait_screen(self, text: str, timeout: float = 10.0) -> None:
        """Wait until `text` was written to the terminal."""
        assert self.screen is not None
        self.wait_for(lambda: text in self.screen.text(), repr(text), timeout)  # type: ignore[union-attr]


def recorded_output(screen: Screen) -> Output:
    """A VT100 terminal of 24x100 whose bytes land in `screen`."""
    return Vt100_Output(screen, lambda: Size(rows=24, columns=100), term="xterm-256color")


@pytest.fixture
def bob(tmp_path: Path) -> Iterator[tuple[Node, EventLog]]:
    node, log = make_node(tmp_path / "bob", "bob")
    yield node, log
    node.close()


@pytest.fixture
def alice_shell(tmp_path: Path, bob: tuple[Node, EventLog]
                ) -> Iterator[Callable[..., ShellRun]]:
    """Start alice's shell (optionally on a recorded terminal) knowing bob by address."""
    runs: list[ShellRun] = []
    pipes = []

    def start(*, record: bool = False) -> ShellRun:
        config = Config(home=tmp_path / "alice", nick="alice", port=0,
                        interfaces=["127.0.0.1"], peers=[f"127.0.0.1:{bob[0].port}"],
                        mdns=False, beacon=False)
        cm = create_pipe_input()
        inp = cm.__enter__()
        pipes.append(cm)
        screen = Screen() if record else None
        output = recorded_output(screen) if screen is not None else DummyOutput()
        shell = Shell(config, input=inp, output=output,
                      plugins=Plugins(config.home, entry_points=False))
        shell.start()
        run = ShellRun(shell, inp, screen)
        run.thread.start()
        runs.append(run)
        bob[1].wait("peer_joined", lambda e: e["peer"]["nick"] == "alice")
        run.wait_for(lambda: shell.state.online() == 1, "bob online in alice's snapshot")
        run.wait_for(lambda: not shell.buffers.loading, "the scrollback read")
        return run

    yield start
    for run in runs:
        if run.thread.is_alive():
            run.type("\x04")
            run.thread.join(10)
        if run.thread.is_alive():
            run.shell.node.close()
    for cm in pipes:
        cm.__exit__(None, None, None)


def test_msg_command_reaches_bob_and_quit_ends_the_shell(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """Alice types /msg bob hi; bob gets it; /quit says bye and returns 0."""
    run = alice_shell()
    run.type("/msg bob hi\r")
    bob[1].wait("message", lambda e: e["text"] == "hi" and e["to"] == "direct")
    run.type("/quit\r")
    run.thread.join(10)
    assert not run.thread.is_alive() and run.rc == 0
    bob[1].wait("peer_left", lambda e: e["peer"]["nick"] == "alice" and e["reason"] == "bye")


def test_plain_line_goes_to_the_chat_target(alice_shell: Callable[..., ShellRun],
                                            bob: tuple[Node, EventLog]) -> None:
    """A plain line goes to everyone; after /chat bob it goes to bob directly."""
    run = alice_shell()
    run.type("hello all\r")
    bob[1].wait("message", lambda e: e["text"] == "hello all" and e["to"] == "broadcast")
    run.type("/chat bob\r")
    run.wait_for(lambda: run.shell.buffers.current == bob[0].node_id, "bob's buffer")
    run.type("just you\r")
    bob[1].wait("message", lambda e: e["text"] == "just you" and e["to"] == "direct")


def test_esc_enter_makes_a_multi_line_message(alice_shell: Callable[..., ShellRun],
                                              bob: tuple[Node, EventLog]) -> None:
    """Esc-Enter inserts a newline; Enter sends both lines as one message."""
    run = alice_shell()
    run.type("line one\x1b\rline two\r")
    bob[1].wait("message", lambda e: e["text"] == "line one\nline two")


def test_ctrl_c_clears_the_half_typed_line(alice_shell: Callable[..., ShellRun],
                                           bob: tuple[Node, EventLog]) -> None:
    """Ctrl-C drops what was typed; the next line is sent alone."""
    run = alice_shell()
    run.type("oops\x03")
    run.type("clean\r")
    got = bob[1].wait("message", lambda e: e["text"].endswith("clean"))
    assert got[0]["text"] == "clean"


def test_incoming_message_keeps_the_half_typed_line(alice_shell: Callable[..., ShellRun],
                                                    bob: tuple[Node, EventLog]) -> None:
    """Bob's message shows while alice is mid-line; her text survives and is sent whole."""
    run = alice_shell(record=True)
    run.type("half typ")
    run.wait_for(lambda: run.shell.session.default_buffer.text == "half typ", "typed text")
    bob[0].broadcast("interrupting")
    run.wait_screen("interrupting")
    assert run.shell.session.default_buffer.text == "half typ"

    def redrawn() -> bool:
        screen = run.screen.text()  # type: ignore[union-attr]
        return "half typ" in screen[screen.index("interrupting"):]

    run.wait_for(redrawn, "the prompt with the typed text drawn again below the message")
    run.type("ed\r")
    bob[1].wait("message", lambda e: e["text"] == "half typed")


def test_peer_escape_sequences_are_shown_not_obeyed(alice_shell: Callable[..., ShellRun],
                                                    bob: tuple[Node, EventLog]) -> None:
    """Clear-screen and set-title from a peer arrive as visible ^[ text, never raw."""
    run = alice_shell(record=True)
    bob[0].broadcast(f"look{ESC_ATTACK}there")
    run.wait_screen("there")
    screen = run.screen.text()  # type: ignore[union-attr]
    assert "look^[[2J^[]0;pwned^Gthere" in screen
    assert "\x1b[2J" not in screen and "\x1b]0;" not in screen and "pwned\x07" not in screen


def test_direct_message_rings_and_counts_as_unread(alice_shell: Callable[..., ShellRun],
                                                   bob: tuple[Node, EventLog]) -> None:
    """A direct message rings the bell and is unread in bob's buffer until alice goes
    there (/chat bob); /bell off stops the bell."""
    run = alice_shell(record=True)
    bob[0].send("alice", "ding")
    run.wait_for(lambda: "\x07" in run.screen.text(), "bell")  # type: ignore[union-attr]
    assert "ding" not in run.screen.text()  # type: ignore[union-attr]
    run.wait_for(lambda: run.shell.buffers.unread_by_key() == {bob[0].node_id: 1},
                 f"one unread in bob's buffer ({run.shell.buffers.unread_by_key()})")
    run.type("/chat bob\r")
    run.wait_screen("ding")
    run.wait_for(lambda: not run.shell.buffers.unread_by_key(), "unread cleared")
    run.type("/bell off\r")
    run.wait_screen("bell off")
    mark = len(run.screen.text())  # type: ignore[union-attr]
    bob[0].send("alice", "quiet")
    run.wait_screen("quiet")
    assert "\x07" not in run.screen.text()[mark:]  # type: ignore[union-attr]


def test_unknown_command_is_a_red_error(alice_shell: Callable[..., ShellRun]) -> None:
    """A mistyped command answers in red and the shell goes on."""
    run = alice_shell(record=True)
    run.type("/frobnicate\r")
    run.wait_screen("unknown command /frobnicate")
    run.type("/list\r")
    run.wait_for(lambda: all(w in run.screen.text().split("> /list")[-1]  # type: ignore[union-attr]
                             for w in ("bob", "online")), "bob online in /list")
    assert run.thread.is_alive()


# -- completion and rendering, without a node -------------------------------------------


class NoShell:
    """The shell side of /buffer, /clear and /bell, for registering them only."""

    bell = True

    def buffer_views(self) -> tuple[()]:
        return ()

    def switch(self, ref: str) -> None:
        raise AssertionError("not used")

    def close_buffer(self, ref: str) -> str:
        raise AssertionError("not used")

    def clear_screen(self) -> None:
        raise AssertionError("not used")


def completer(peers: tuple[PeerView, ...], buffers: Buffers | None = None) -> ShellCompleter:
    """A completer over the built-in and shell commands and fixed snapshots."""
    registry = build_registry(Plugins(None, entry_points=False))
    add_shell_commands(registry, NoShell())
    return ShellCompleter(registry, lambda: peers,
                          lambda: buffers.views if buffers is not None else ())


PEERS = (PeerView("a" * 52, "alice", 1, True), PeerView("b" * 52, "albert", 2, False),
         PeerView("c" * 52, "evil\x1b[2J", 3, True))


def complete(text: str, peers: tuple[PeerView, ...] = PEERS) -> set[str]:
    """The texts the completer offers for `text` with the cursor at its end."""
    doc = Document(text, len(text))
    return {c.text for c in completer(peers).get_completions(doc, CompleteEvent(True))}


def test_completes_command_names() -> None:
    """A slash and a prefix complete to the commands that start with it."""
    assert complete("/ms") == {"/msg"}
    assert complete("/be") == {"/bell"}
    assert complete("/bu") == {"/buffer"}
    assert {"/msg", "/chat", "/list", "/quit", "/help", "/bell"} <= complete("/")


def test_completes_nicks_and_list_numbers() -> None:
    """Peer arguments complete to nicks, numbers, and 'all' where the command takes it."""
    assert complete("/msg al") == {"alice", "albert"}
    assert complete("/msg 2") == {"2"}
    assert complete("/chat a") == {"all", "alice", "albert"}
    assert complete("/msg alice hel") == set()
    assert complete("hi al") == {"alice", "albert"}


def test_an_unsafe_nick_completes_to_its_number() -> None:
    """A nick with an escape is offered as its list number, shown safely."""
    comps = list(completer(PEERS).get_completions(Document("/whois "), CompleteEvent(True)))
    evil = [c for c in comps if c.text == "3"]
    assert evil and "^[" in evil[0].display_text and "\x1b" not in evil[0].display_text
    assert not any("\x1b" in c.text for c in comps)


def test_completes_paths_for_file(tmp_path: Path) -> None:
    """The second argument of /file completes file names."""
    (tmp_path / "report.pdf").write_bytes(b"x")
    (tmp_path / "readme.txt").write_bytes(b"x")
    assert complete(f"/file alice {tmp_path}/re") == {"port.pdf", "adme.txt"}


def test_message_lines_are_safe_and_coloured_by_id() -> None:
    """A peer's nick and text lose their escapes; the same id gets the same colour."""
    event = Event.make("message", id="m1", to="broadcast", text="/me waves \u202e",
                       **{"from": {"id": "x" * 52, "nick": "b\x1bob"}})
    line = render.event_lines(event, ShellState())
    assert line is not None
    text = "".join(t for _, t in line)
    assert text.endswith("* b^[ob waves <U+202E>")
    assert render.nick_class("x" * 52) == render.nick_class("x" * 52)
    assert len({render.nick_class(c * 52) for c in "abcdefghijklmnop"}) > 3


def test_ctrl_d_leaves_and_lines_are_kept_in_history(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """Lines typed go to <home>/history; Ctrl-D on an empty line says bye and returns 0."""
    run = alice_shell()
    run.type("/msg bob remember me\r")
    bob[1].wait("message", lambda e: e["text"] == "remember me")
    run.type("\x04")
    run.thread.join(10)
    assert not run.thread.is_alive() and run.rc == 0
    history = (run.shell.config.home / "history").read_text()
    assert "+/msg bob remember me" in history
    bob[1].wait("peer_left", lambda e: e["peer"]["nick"] == "alice" and e["reason"] == "bye")


def test_home_in_use_is_one_line_on_stderr_and_exit_1(
        tmp_path: Path, bob: tuple[Node, EventLog], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A second shell on bob's home prints why it cannot start and returns 1."""
    from lanchat.shell import app

    monkeypatch.setattr(app, "_is_terminal", lambda: True)
    config = Config(home=bob[0].config.home, nick="bob2", port=0, interfaces=["127.0.0.1"],
                    mdns=False, beacon=False)
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        assert app.run_shell(config) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use by another lanchat" in err


def test_toolbar_shows_buffers_unread_mentions_peers_and_transfers() -> None:
    """The toolbar is a hotlist: every buffer with its number, the current one in
    brackets, unread counts, `!` where alice was named; then peers online and transfers,
    counting an offer that waits."""
    from lanchat.shell.buffers import Kind, Level, Line
    from lanchat.shell.toolbar import create_toolbar_tokens_func

    rows = [{"transfer": "t1", "name": "a.pdf", "peer": "c" * 52, "nick": "carol",
             "direction": "in", "state": "offered"}]
    state = ShellState("a" * 52, "alice", transfers=lambda: rows)
    state.refresh_transfers()
    state.load([{"id": "b" * 52, "nick": "bob", "number": 1, "online": True},
                {"id": "c" * 52, "nick": "carol", "number": 2, "online": False}])
    buffers = Buffers()
    buffers.add("c" * 52, Kind.DIRECT, "carol", Line([("", "psst")]), incoming_id="m1",
                level=Level.PRIVATE)
    buffers.add("all", Kind.EVERYONE, "all", Line([("", "hi alice")]), incoming_id="m2")
    buffers.add("#lunch", Kind.ROOM, "#lunch", Line([("", "alice?")]), incoming_id="m3",
                level=Level.HIGHLIGHT)
    draw = create_toolbar_tokens_func(state, buffers)
    text = "".join(t for _, t in draw())
    assert " 1:lanchat [2:all] 3:carol(1) 4:#lunch(1!) " in text
    assert "1 online" in text and "0 transfers, 1 offer waiting" in text
    buffers.switch("c" * 52)
    text = "".join(t for _, t in draw())
    assert " 1:lanchat 2:all [3:carol] 4:#lunch(1!) " in text
    # a narrow terminal: the current buffer and the mention stay, the rest are counted
    narrow = create_toolbar_tokens_func(state, buffers, lambda: 80)
    text = "".join(t for _, t in narrow())
    assert text.startswith(" [3:carol] 4:#lunch(1!) +2 | 1 online")


def test_toolbar_shows_a_progress_bar_with_rate_and_time_left() -> None:
    """A file moving in shows as a line with peer, name, percent, rate and time left;
    gone when done."""
    from lanchat.shell.toolbar import create_toolbar_tokens_func

    rows = [{"transfer": "t1", "name": "report.pdf", "peer": "b" * 52, "nick": "bob",
             "direction": "in", "state": "accepted"}]
    state = ShellState("me", "alice", transfers=lambda: rows)
    state.apply(Event("file_offer", MappingProxyType(
        {"transfer": "t1", "name": "report.pdf", "size": 100 << 20}), ts=100.0))
    state.apply(Event("file_progress", MappingProxyType(
        {"transfer": "t1", "done": 0, "size": 100 << 20}), ts=100.0))
    state.apply(Event("file_progress", MappingProxyType(
        {"transfer": "t1", "done": 50 << 20, "size": 100 << 20}), ts=101.0))
    draw = create_toolbar_tokens_func(state, Buffers())
    text = "".join(t for _, t in draw())
    assert "\n <- bob report.pdf [######------]  50% 50.0 MiB/s 0:01 left" in text
    assert "1 transfer " in text
    rows.clear()
    state.apply(Event("file_done", MappingProxyType({"transfer": "t1"}), ts=102.0))
    text = "".join(t for _, t in draw())
    assert "report.pdf" not in text and "0 transfers" in text


@pytest.mark.loop_may_block(
    "a flood of many messages holds the loop for seconds on a loaded machine (known)")
def test_the_shell_answers_while_a_peer_floods_it(
        alice_shell: Callable[..., ShellRun], bob: tuple[Node, EventLog]) -> None:
    """Bob floods alice's shell with 30,000 messages; a line alice types mid-flood still
    goes out at once, the flood all arrives, and the screen is not buried line by line."""
    run = alice_shell(record=True)
    run.type("/chat bob\r")
    run.wait_for(lambda: run.shell.buffers.current == bob[0].node_id, "bob's buffer")
    n = 30_000
    for i in range(n):
        bob[0].send("alice", f"flood {i}")
    screen = run.screen
    assert screen is not None
    run.wait_for(lambda: "flood 100" in screen.text(), "the flood starting", timeout=30)
    run.type("/msg bob still typing\r")
    bob[1].wait("message", lambda e: e["text"] == "still typing", timeout=30)
    delivered = bob[1].wait("delivered", count=n, timeout=120)
    assert len(delivered) == n
    with bob[1].cond:
        order = [e.name == "message" for e in bob[1].events if e.name in ("message",
                                                                           "delivered")]
    assert order.index(True) < len(order) - 1, "alice's line did not wait for the flood"
    assert run.shell.node.store is not None
    assert run.shell.node.store.count_messages("in") == n


@pytest.mark.parametrize("leave", ["/quit\r", "\x04"], ids=["quit", "ctrl-d"])
def test_lines_typed_while_the_node_starts_run_once_in_order_once_it_is_up(
        tmp_path: Path, bob: tuple[Node, EventLog], monkeypatch: pytest.MonkeyPatch,
        leave: str) -> None:
    """The prompt is drawn (the toolbar says "starting…") before the node is built. Lines
    typed then (held here: the node's build waits for a gate) wait for it; once it is up
    they run once each, in order (/chat before the plain line it aims), and a /quit queued
    last, or Ctrl-D pressed last, ends the shell cleanly after them, saying bye to bob; the
    history file has them after."""
    from lanchat.shell import node_side

    home = tmp_path / "alice"
    first, first_log = make_node(home, "alice", peers=[f"127.0.0.1:{bob[0].port}"])
    first_log.wait("peer_joined", lambda e: e["peer"]["nick"] == "bob")
    bob[0].send("alice", "hi")  # a message went between them: alice keeps bob on restart
    first_log.wait("message", lambda e: e["text"] == "hi")
    first.close()
    gate = threading.Event()
    real_open = node_side.open_node

    def held_open(config: Config, plugins: Plugins | None = None) -> Node:
        if not gate.wait(30):
            raise AssertionError("the test never opened the gate")
        return real_open(config, plugins)

    monkeypatch.setattr(node_side, "open_node", held_open)
    config = Config(home=home, nick="alice", port=0, interfaces=["127.0.0.1"],
                    peers=[f"127.0.0.1:{bob[0].port}"], mdns=False, beacon=False)
    screen = Screen()
    with create_pipe_input() as inp:
        shell = Shell(config, input=inp, output=recorded_output(screen),
                      plugins=Plugins(home, entry_points=False))
        run = ShellRun(shell, inp, screen)
        run.thread.start()
        try:
            run.wait_screen("all>")  # the prompt, drawn before the node is built
            toolbar = shell.session.bottom_toolbar
            assert callable(toolbar) and "starting…" in "".join(t for _, t in toolbar())
            lines = ["/msg bob one", "/chat bob", "two", "/msg bob three"]
            lines += ["/quit"] if leave == "/quit\r" else []
            for line in lines:
                run.type(line + "\r")
            run.wait_for(lambda: len(shell._pending) == len(lines), "every line queued")
            if leave == "\x04":  # the prompt ends at once; the lines wait for the node
                run.type(leave)
                run.wait_for(lambda: not shell.session.app.is_running, "Ctrl-D seen")
            assert shell.back is None and not shell.up  # nothing ran: the node is not built
            gate.set()
            run.thread.join(30)
            assert not run.thread.is_alive() and run.rc == 0
        finally:
            gate.set()
            if run.thread.is_alive():
                run.type("\x04")
                run.thread.join(10)
    bob[1].wait("peer_left", lambda e: e["peer"]["nick"] == "alice" and e["reason"] == "bye")
    texts = [e["text"] for e in bob[1].named("message") if e["from"]["nick"] == "alice"]
    bye = bob[1].named("peer_left")
    assert texts == ["one", "two", "three"], texts
    assert [e["to"] for e in bob[1].named("message")] == ["direct"] * 3 and bye
    assert all(f"+{line}\n" in (home / "history").read_text() for line in lines)


def test_a_signal_while_the_shell_closes_does_not_cut_the_close_short(
        tmp_path: Path, bob: tuple[Node, EventLog]) -> None:
    """A SIGTERM (or Ctrl-C) that comes while the shell closes, here from a plugin's
    shutdown hook, waits until the close is done: the byes are said and the signal's own
    handler is back afterwards (it raised inside the close and skipped the rest)."""
    import os
    import signal

    class SignalsDuringShutdown:
        @staticmethod
        @hookimpl
        def lanchat_shutdown(node: Any) -> None:
            os.kill(os.getpid(), signal.SIGTERM)

    config = Config(home=tmp_path / "alice", nick="alice", port=0, interfaces=["127.0.0.1"],
                    peers=[f"127.0.0.1:{bob[0].port}"], mdns=False, beacon=False)
    hits: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        raise RuntimeError("the signal reached the close")

    saved = signal.signal(signal.SIGTERM, handler)
    try:
        with create_pipe_input() as inp:
            shell = Shell(config, input=inp, output=DummyOutput(),
                          plugins=Plugins(config.home, entry_points=False,
                                          extra=[SignalsDuringShutdown]))
            shell.start()
            bob[1].wait("peer_joined", lambda e: e["peer"]["nick"] == "alice")
            shell.close()
        assert signal.getsignal(signal.SIGTERM) is handler
        bob[1].wait("peer_left", lambda e: e["peer"]["nick"] == "alice" and e["reason"] == "bye")
        assert not hits
    finally:
        signal.signal(signal.SIGTERM, saved)
