"""The bottom toolbar: the buffer list with unread counts (the hotlist), peers online,
transfers, and one line per moving file. It only reads snapshots."""

from __future__ import annotations

from collections.abc import Callable

from lanchat.shell.buffers import Buffers, BufferView, Kind, Level
from lanchat.shell.render import Fragments
from lanchat.shell.state import Progress, ShellState
from lanchat.text import safe_line

BAR_CELLS = 12
NAME_CHARS = 14  # a buffer name longer than this is cut in the list
FILE_CHARS = 24
PROGRESS_LINES = 3  # moving files drawn one per line; more are counted
LEVEL_STYLE = {Level.LOW: "class:bottom-toolbar.low",
               Level.MESSAGE: "class:bottom-toolbar.unread",
               Level.PRIVATE: "class:bottom-toolbar.private",
               Level.HIGHLIGHT: "class:bottom-toolbar.mention"}


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _cut(text: str, chars: int) -> str:
    text = safe_line(text)
    return text if len(text) <= chars else text[:chars - 1] + "~"


def progress_label(p: Progress) -> str:
    """`-> bob report.pdf [#####-------]  42% 80.0 MiB/s 0:07 left`."""
    filled = int(p.fraction * BAR_CELLS)
    bar = "#" * filled + "-" * (BAR_CELLS - filled)
    eta = p.eta
    left = "--:--" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}"
    who = f"{'->' if p.direction == 'out' else '<-'} {_cut(p.peer, NAME_CHARS)} " \
        if p.peer else ""
    return (f"{who}{_cut(p.name, FILE_CHARS)} [{bar}] {p.fraction:4.0%} "
            f"{_size(p.rate)}/s {left} left")


def buffer_label(view: BufferView) -> str:
    """`3:bob(2!)`: number, name, unread count, `!` where you were mentioned."""
    name = _cut(view.name, NAME_CHARS) + (" (left)" if view.parted else "")
    label = f"{view.number}:{name}"
    if view.unread:
        label += f"({view.unread}{'!' if view.level is Level.HIGHLIGHT else ''})"
    return f"[{label}]" if view.current else label


def current_name(buffers: Buffers) -> str:
    """The current buffer's name, safe, for the prompt."""
    view = next((v for v in buffers.views if v.current), None)
    return _cut(view.name, NAME_CHARS * 2) if view else "?"


def _transfer_words(state: ShellState) -> str:
    active, waiting = state.transfers()
    words = [f"{active} transfer{'' if active == 1 else 's'}"]
    if waiting:
        words.append(f"{waiting} offer{'' if waiting == 1 else 's'} waiting")
    return ", ".join(words)


def fitting(views: tuple[BufferView, ...], width: int) -> tuple[list[BufferView], int]:
    """The buffers the list has room for in `width` cells, and how many are left out: the
    current one, then the most pressing activity, then by number; shown in number order."""
    cost = [len(buffer_label(v)) + 1 for v in views]
    if sum(cost) <= width:
        return list(views), 0
    budget = width - len(f" +{len(views)}")
    ranked = sorted(range(len(views)), key=lambda i: (not views[i].current,
                                                      -views[i].level, views[i].number))
    chosen: set[int] = set()
    for i in ranked:
        if cost[i] <= budget:
            chosen.add(i)
            budget -= cost[i]
    return [views[i] for i in sorted(chosen)], len(views) - len(chosen)


def create_toolbar_tokens_func(state: ShellState, buffers: Buffers,
                               width: Callable[[], int] = lambda: 200
                               ) -> Callable[[], Fragments]:
    """A function the prompt calls at each redraw to draw the toolbar (`width`: the
    terminal's columns)."""

    def get_toolbar_tokens() -> Fragments:
        if state.starting:  # what is typed meanwhile runs once the node is up
            status: Fragments = [("class:bottom-toolbar", " | starting… ")]
        else:
            status = [
                ("class:bottom-toolbar", f" | {state.online()} online"),
                ("class:bottom-toolbar", f" | {_transfer_words(state)}"),
                ("class:bottom-toolbar", f" | bell {'on' if state.bell else 'off'} "),
            ]
        room = width() - sum(len(f[1]) for f in status) - 1
        shown, hidden = fitting(buffers.views, max(room, 0))
        tokens: Fragments = []
        for view in shown:
            style = ("class:bottom-toolbar.current" if view.current
                     else LEVEL_STYLE.get(view.level, "class:bottom-toolbar"))
            if view.kind is Kind.DIRECT and view.unread and not view.current:
                style = LEVEL_STYLE[max(view.level, Level.PRIVATE)]
            tokens.append(("class:bottom-toolbar", " "))
            tokens.append((style, buffer_label(view)))
        if hidden:
            tokens.append(("class:bottom-toolbar", f" +{hidden}"))
        tokens += status
        moving = sorted(state.progress.values(), key=lambda p: p.first_ts)
        for p in moving[:PROGRESS_LINES]:
            tokens.append(("class:bottom-toolbar.progress", f"\n {progress_label(p)} "))
        if len(moving) > PROGRESS_LINES:
            tokens.append(("class:bottom-toolbar.progress",
                           f"\n (+{len(moving) - PROGRESS_LINES} more: /transfers) "))
        return tokens

    return get_toolbar_tokens
