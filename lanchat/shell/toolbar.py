"""The bottom toolbar: target, peers online, unread, transfers. It only reads."""

from __future__ import annotations

from collections.abc import Callable

from lanchat.shell.render import Fragments
from lanchat.shell.state import Progress, ShellState
from lanchat.text import safe_line

BAR_CELLS = 12


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def progress_label(p: Progress) -> str:
    """A text progress bar with rate and time left: `name [#####-----] 42% 80 MiB/s 0:07`."""
    filled = int(p.fraction * BAR_CELLS)
    bar = "#" * filled + "-" * (BAR_CELLS - filled)
    eta = p.eta
    left = "--:--" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}"
    name = safe_line(p.name)
    if len(name) > 20:
        name = name[:19] + "~"
    return f"{name} [{bar}] {p.fraction:4.0%} {_size(p.rate)}/s {left} left"


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
        tokens: Fragments = [
            ("class:bottom-toolbar", f" to: {target_label(state)}"),
            ("class:bottom-toolbar", f" | {state.online()} online"),
            ("class:bottom-toolbar.unread" if unread else "class:bottom-toolbar",
             f" | {unread} unread"),
            ("class:bottom-toolbar", f" | {state.transfers()} transfers"),
            ("class:bottom-toolbar", f" | bell {'on' if state.bell else 'off'} "),
        ]
        moving = sorted(state.progress.values(), key=lambda p: p.ts)
        if moving:
            more = f" (+{len(moving) - 1} more)" if len(moving) > 1 else ""
            tokens.append(("class:bottom-toolbar.progress",
                           f"| {progress_label(moving[-1])}{more} "))
        return tokens

    return get_toolbar_tokens
