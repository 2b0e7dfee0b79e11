"""The bottom toolbar: target, peers online, unread, transfers. It only reads."""

from __future__ import annotations

from collections.abc import Callable

from lanchat.shell.render import Fragments
from lanchat.shell.state import ShellState
from lanchat.text import safe_line


def target_label(state: ShellState) -> str:
    """Where plain lines go, as people read it."""
    if state.target == "all":
        return "all"
    peer = state.peer(state.target)
    return safe_line(peer.nick) if peer else state.target[:8]


def create_toolbar_tokens_func(state: ShellState) -> Callable[[], Fragments]:
    """A function the prompt calls at each redraw to draw the toolbar."""

    def get_toolbar_tokens() -> Fragments:
        unread = state.unread_total()
        return [
            ("class:bottom-toolbar", f" to: {target_label(state)}"),
            ("class:bottom-toolbar", f" | {state.online()} online"),
            ("class:bottom-toolbar.unread" if unread else "class:bottom-toolbar",
             f" | {unread} unread"),
            ("class:bottom-toolbar", f" | {state.transfers()} transfers"),
            ("class:bottom-toolbar", f" | bell {'on' if state.bell else 'off'} "),
        ]

    return get_toolbar_tokens
