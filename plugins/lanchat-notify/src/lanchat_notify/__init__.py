"""lanchat-notify: tell the person at the keyboard about direct messages and mentions of
their nick, with `notify-send` when a desktop is there and a terminal bell otherwise.

Peer text never reaches a shell: notify-send gets an argument list after `--`, with control
and bidi characters removed and markup escaped. No OSC escape sequences are written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from lanchat.commands import CommandError, Output
from lanchat.hookspecs import hookimpl

__all__ = ["MODES", "BellNotifier", "DesktopNotifier", "NotifyPlugin", "clean",
           "default_notifier", "mentions", "plugin"]

MODES = ("on", "mentions", "off")
TITLE_CHARS = 80
BODY_CHARS = 240
Notifier = Callable[[str, str], None]

# C0 controls (newline and tab too: a notification is one paragraph), DEL, C1 controls,
# and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean(text: str, limit: int, *, markup: bool = False) -> str:
    """One safe line of at most `limit` characters; with `markup`, &, < and > escaped."""
    line = " ".join(_UNSAFE.sub(" ", text).split())
    if len(line) > limit:
        line = line[:limit - 1].rstrip() + "\u2026"
    if markup:
        line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return line


def mentions(text: str, nick: str) -> bool:
    """True if `text` names `nick` as a word (any case, with or without a leading @)."""
    if not nick:
        return False
    return re.search(rf"(?<![\w]){re.escape(nick)}(?![\w])", text, re.IGNORECASE) is not None


class BellNotifier:
    """Ring the terminal bell on `stream`, only if it is a terminal; nothing else is written."""

    name = "bell"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, title: str, body: str) -> None:
        """Write one BEL character."""
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            if stream.isatty():
                stream.write("\a")
                stream.flush()
        except (OSError, ValueError):
            pass


class DesktopNotifier:
    """Run `notify-send` with an argument list (no shell), in the background by default."""

    name = "notify-send"

    def __init__(self, program: str, *, background: bool = True, timeout: float = 5.0) -> None:
        self.program = program
        self.background = background
        self.timeout = timeout

    def command(self, title: str, body: str) -> list[str]:
        """The exact argv: options first, then `--`, so peer text is never an option."""
        return [self.program, "--app-name=lanchat", "--", clean(title, TITLE_CHARS),
                clean(body, BODY_CHARS, markup=True)]

    def _run(self, argv: list[str]) -> None:
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=self.timeout, check=False)
        except (OSError, subprocess.SubprocessError):
            pass

    def __call__(self, title: str, body: str) -> None:
        """Show one notification."""
        argv = self.command(title, body)
        if self.background:
            threading.Thread(target=self._run, args=(argv,), name="lanchat-notify",
                             daemon=True).start()
        else:
            self._run(argv)


def default_notifier() -> Notifier:
    """notify-send when it is installed and a desktop session is there, else the bell."""
    program = shutil.which("notify-send")
    if program and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return DesktopNotifier(program)
    return BellNotifier()


class NotifyPlugin:
    """Notifications for direct messages and mentions; `/notify on|off|mentions`."""

    def __init__(self, notifier: Notifier | None = None, *, mode: str | None = None,
                 min_interval: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        mode = mode or os.environ.get("LANCHAT_NOTIFY", "on")
        self.default_mode = mode if mode in MODES else "on"
        self._notifier = notifier
        self.min_interval = min_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._modes: dict[str, str] = {}
        self._last: dict[tuple[str, str], float] = {}

    @property
    def notifier(self) -> Notifier:
        """The notifier in use (chosen on first use)."""
        if self._notifier is None:
            self._notifier = default_notifier()
        return self._notifier

    def mode(self, node: Any) -> str:
        """This node's mode: 'on', 'mentions' or 'off'."""
        with self._lock:
            return self._modes.get(node.info()["id"], self.default_mode)

    def _notify_cmd(self, ctx: Any, argtext: str) -> Output:
        word = argtext.strip().lower()
        backend = getattr(self.notifier, "name", type(self.notifier).__name__)
        if word == "test":
            self.notifier("lanchat", "notifications work")
            return Output(f"sent a test notification ({backend})", {"backend": backend})
        if word:
            if word not in MODES:
                raise CommandError("usage: /notify [on|off|mentions|test]")
            with self._lock:
                self._modes[ctx.node.info()["id"]] = word
        mode = self.mode(ctx.node)
        what = {"on": "direct messages and mentions of your nick",
                "mentions": "only mentions of your nick", "off": "nothing"}[mode]
        return Output(f"notify {mode}: {what} ({backend})", {"mode": mode, "backend": backend})

    @hookimpl
    def lanchat_register_commands(self, registry: Any) -> None:
        """Add /notify."""
        registry.add("notify", self._notify_cmd, help="desktop notifications and bell",
                     usage="/notify [on|off|mentions|test]")

    @hookimpl
    def lanchat_message_received(self, node: Any, message: dict[str, Any]) -> None:
        """Notify for a direct message (mode on) or a mention of our nick (on, mentions)."""
        mode = self.mode(node)
        if mode == "off":
            return
        sender = message["from"]
        text = str(message.get("text", ""))
        me = node.info()
        if mentions(text, me["nick"]):
            title = f"{sender['nick']} mentioned you"
        elif mode == "on" and message.get("to") == "direct":
            title = f"message from {sender['nick']}"
        else:
            return
        key = (me["id"], sender["id"])
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.min_interval:
                return
            self._last[key] = now
        self.notifier(f"lanchat: {title}", text)


plugin = NotifyPlugin()
