"""Which buffer is on screen: switching, closing and clearing buffers, where a plain line
goes, and when the read markers are written (UI thread, but `save_soon`)."""

from __future__ import annotations

import time

from prompt_toolkit import PromptSession

from lanchat.commands import CommandError, Context
from lanchat.node import Node
from lanchat.shell.buffers import EVERYONE, Buffers, BufferView, Kind
from lanchat.shell.printer import Printer
from lanchat.shell.state import ShellState
from lanchat.text import safe_line

REPAINT_LINES = 200  # written when switching buffers; the rest is in /history
SAVE_EVERY_S = 5.0  # read markers of messages read in the current buffer


class Navigator:
    """The current buffer and moves between buffers; what /buffer, /clear, /bell and the
    keys change (`local_commands.ShellControl`)."""

    def __init__(self, node: Node, ctx: Context, state: ShellState, buffers: Buffers,
                 printer: Printer, session: PromptSession[str]) -> None:
        self.node = node
        self.ctx = ctx
        self.state = state
        self.buffers = buffers
        self.printer = printer
        self._session = session
        self._saved_at = time.monotonic()

    @property
    def bell(self) -> bool:
        """Whether direct messages and mentions ring the terminal bell."""
        return self.state.bell

    @bell.setter
    def bell(self, on: bool) -> None:
        self.state.bell = on

    def save_soon(self) -> None:
        """Write the read markers if the last write is SAVE_EVERY_S old (any thread)."""
        if time.monotonic() - self._saved_at > SAVE_EVERY_S:
            self._saved_at = time.monotonic()
            self.buffers.save()

    def buffer_views(self) -> tuple[BufferView, ...]:
        """The buffer list, as the toolbar shows it."""
        return self.buffers.views

    def switch(self, ref: str) -> None:
        """Go to a buffer by number, name, room or peer; raise CommandError if none."""
        buf = self.buffers.find(ref, self.open_peer)
        if buf is None:
            raise CommandError(f"no buffer {ref!r}; /buffer lists them")
        self.show(buf.key)

    def open_peer(self, ref: str) -> str | None:
        """A peer reference as a direct buffer's key, opening the buffer."""
        if ref.startswith("#"):
            return None
        try:
            peer = self.node.resolve(ref)
        except LookupError:
            return None
        self.buffers.ensure(str(peer["id"]), Kind.DIRECT,
                            self.state.display(str(peer["id"]), str(peer["nick"])))
        return str(peer["id"])

    def show(self, key: str) -> None:
        """Make `key` the current buffer and repaint the screen with its lines."""
        with self.buffers.lock:
            self.buffers.switch(key)
            self.printer.repaint(self.buffers.tail(key, REPAINT_LINES))
        self.set_target(key)
        self.buffers.save()
        self._saved_at = time.monotonic()
        app = self._session.app
        if app.is_running:
            app.invalidate()

    def step(self, delta: int) -> None:
        """The next or previous buffer."""
        self.show(self.buffers.neighbour(delta))

    def jump_active(self) -> None:
        """The buffer with the most pressing unread activity, if any."""
        key = self.buffers.most_active()
        if key is not None:
            self.show(key)

    def close_buffer(self, ref: str) -> str:
        """Close a direct or room buffer (the current one without `ref`)."""
        buf = self.buffers.find(ref) if ref.strip() else \
            self.buffers.get(self.buffers.current)
        if buf is None or buf.kind in (Kind.NOTICES, Kind.EVERYONE):
            raise CommandError(f"{ref or 'this buffer'!r} cannot be closed; /buffer lists them")
        was_current = buf.key == self.buffers.current
        self.buffers.close(buf.key)
        if was_current:
            self.show(EVERYONE)
        return safe_line(buf.name)

    def clear_screen(self) -> None:
        """Forget the current buffer's lines in memory and clear the screen."""
        with self.buffers.lock:
            self.buffers.clear(self.buffers.current)
            self.printer.repaint([])

    def set_target(self, key: str) -> None:
        """Where /me and plain lines go: the buffer's peer, room or everyone."""
        buf = self.buffers.get(key)
        self.ctx.target = key if buf is not None and buf.kind in (Kind.DIRECT, Kind.ROOM) \
            else EVERYONE

    def follow(self, before: str) -> None:
        """A command moved the target (/chat, /join, /part, /forget): go where it points."""
        new = self.ctx.target
        if new == before:
            return
        if new.startswith("#"):
            self.buffers.ensure(new, Kind.ROOM, new)
        elif new != EVERYONE and self.buffers.get(new) is None:
            self.open_peer(new)
        self.show(new if self.buffers.get(new) is not None else EVERYONE)
