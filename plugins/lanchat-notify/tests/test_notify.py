"""lanchat-notify against real in-process nodes on 127.0.0.1 and a stand-in notify-send."""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lanchat_notify
import pytest
from lanchat_notify import (
    BellNotifier,
    DesktopNotifier,
    NotifyPlugin,
    clean,
    default_notifier,
    mentions,
)

from lanchat.commands import CommandError

PACKAGE = Path(__file__).resolve().parents[1]
HOSTILE = ("$(touch PWNED); `touch PWNED` | rm -rf ~ -u critical <b>bold</b> & "
           "\x1b]777;notify;x;y\x07\x1b[2J \u202eevil\u202c\nline two")


class Recorder:
    """A notifier that remembers what it was asked to show."""

    name = "recorder"

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def __call__(self, title: str, body: str) -> None:
        self.shown.append((title, body))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def deliver(sender: Any, receiver: Any, text: str, *, to_all: bool = False) -> None:
    """Send `text` and wait until the receiver's plugins have seen it."""
    if to_all:
        msg_id, _ = sender.node.broadcast(text)
    else:
        msg_id = sender.node.send(receiver.node.node_id, text)
    receiver.log.wait("message", lambda e: e["id"] == msg_id)
    receiver.settle()


def fake_notify_send(folder: Path) -> Path:
    """An executable `notify-send` that writes its argv as JSON next to itself."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "notify-send"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(folder / 'argv.json')!r}, 'w').write(json.dumps(sys.argv))\n")
    script.chmod(0o755)
    return script


def test_direct_messages_and_mentions_notify(plugged: Callable[..., Any]) -> None:
    """Bob hears of alice's direct message and of a broadcast naming him, not other chatter."""
    shown = Recorder()
    bob = plugged("bob", NotifyPlugin(shown, min_interval=0))
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    deliver(alice, bob, "got a minute?")
    deliver(alice, bob, "lunch at noon", to_all=True)
    deliver(alice, bob, "ask @Bob, he knows", to_all=True)
    assert shown.shown == [("lanchat: message from alice", "got a minute?"),
                           ("lanchat: alice mentioned you", "ask @Bob, he knows")]


def test_mentions_mode_and_off_mode(plugged: Callable[..., Any]) -> None:
    """In mentions mode only his nick rings; off is silent; a bad mode says the usage."""
    shown = Recorder()
    bob = plugged("bob", NotifyPlugin(shown, min_interval=0))
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    out = bob.run("/notify mentions")
    assert out is not None and out.data == {"mode": "mentions", "backend": "recorder"}
    deliver(alice, bob, "plain direct")
    deliver(alice, bob, "bob: direct and named")
    bob.run("/notify off")
    deliver(alice, bob, "bob bob bob")
    assert shown.shown == [("lanchat: alice mentioned you", "bob: direct and named")]
    with pytest.raises(CommandError, match="usage: /notify"):
        bob.run("/notify loud")
    status = bob.run("/notify")
    assert status is not None and status.text == "notify off: nothing (recorder)"


def test_a_flood_from_one_peer_notifies_once_per_interval(plugged: Callable[..., Any]) -> None:
    """Ten quick messages from alice make one notification until three seconds pass."""
    shown, clock = Recorder(), Clock()
    bob = plugged("bob", NotifyPlugin(shown, min_interval=3.0, clock=clock))
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    for i in range(10):
        deliver(alice, bob, f"spam {i}")
    clock.now += 3.0
    deliver(alice, bob, "after the pause")
    assert [body for _, body in shown.shown] == ["spam 0", "after the pause"]


def test_notify_send_gets_peer_text_as_one_safe_argument(
        plugged: Callable[..., Any], tmp_path: Path) -> None:
    """Hostile text reaches notify-send after `--`, escaped, one line, and runs nothing."""
    script = fake_notify_send(tmp_path / "bin")
    bob = plugged("bob", NotifyPlugin(DesktopNotifier(str(script), background=False)))
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    deliver(alice, bob, HOSTILE)
    argv = json.loads((tmp_path / "bin" / "argv.json").read_text())
    assert argv[1:4] == ["--app-name=lanchat", "--", "lanchat: message from alice"]
    body = argv[4]
    assert body == ("$(touch PWNED); `touch PWNED` | rm -rf ~ -u critical &lt;b&gt;bold&lt;/b&gt;"
                    " &amp; ]777;notify;x;y [2J evil line two")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in body)
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_clean_truncates_and_keeps_a_title_plain() -> None:
    """Long text is cut with an ellipsis; only the body escapes markup."""
    assert clean("a <b> " * 100, 20) == "a <b> a <b> a <b> a\u2026"
    assert clean("x & y", 10, markup=True) == "x &amp; y"


def test_mentions_match_the_nick_as_a_word() -> None:
    """Nick matches ignore case and an @, but not a longer word or regex look-alikes."""
    assert mentions("hey @BOB!", "bob")
    assert mentions("bob", "bob")
    assert not mentions("bobby tables", "bob")
    assert not mentions("axb", "a.b")
    assert mentions("thanks a.b.", "a.b")
    assert not mentions("anything", "")


def test_bell_rings_only_on_a_terminal() -> None:
    """The bell writes one BEL to a terminal and nothing at all to a pipe or file."""
    tty, pipe = Tty(), io.StringIO()
    BellNotifier(tty)("lanchat", HOSTILE)
    BellNotifier(pipe)("lanchat", HOSTILE)
    assert tty.getvalue() == "\a" and pipe.getvalue() == ""


def test_notify_send_is_used_only_with_a_desktop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With notify-send on PATH and a display, it is the backend; without a display, the bell."""
    script = fake_notify_send(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(script.parent) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    chosen = default_notifier()
    assert isinstance(chosen, DesktopNotifier) and chosen.program == str(script)
    monkeypatch.delenv("DISPLAY")
    assert isinstance(default_notifier(), BellNotifier)


def test_test_subcommand_shows_one_notification(plugged: Callable[..., Any]) -> None:
    """/notify test shows a sample notification through the chosen backend."""
    shown = Recorder()
    bob = plugged("bob", NotifyPlugin(shown))
    out = bob.run("/notify test")
    assert out is not None and shown.shown == [("lanchat", "notifications work")]


def test_entry_point_names_the_plugin_object() -> None:
    """The package's `lanchat` entry point loads the module's NotifyPlugin instance."""
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    module, _, attr = meta["project"]["entry-points"]["lanchat"]["notify"].partition(":")
    loaded = getattr(importlib.import_module(module), attr)
    assert isinstance(loaded, NotifyPlugin) and loaded is lanchat_notify.plugin
