"""Lines above the prompt, batched: the event thread queues, one loop task writes.

Writing each line on its own redraws the prompt every time and falls behind at high
rates; here a task in the prompt's loop writes everything queued at once, at most every
BATCH_S, with the prompt erased before and redrawn after, so typing is never torn.
Switching buffers repaints: the screen (and the terminal's scrollback) is cleared and the
new buffer's last lines are written. An outgoing message waits up to its `hold_until` for
its delivery mark, and the lines after it wait with it, so the order stays.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from prompt_toolkit.application import Application, run_in_terminal
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.output import Output
from prompt_toolkit.renderer import print_formatted_text
from prompt_toolkit.styles import BaseStyle

from lanchat.shell.buffers import Line
from lanchat.shell.render import Fragments

BATCH_S = 0.04
# More than this in one batch (50,000 lines/s) is more than anyone reads: the oldest are
# left out with a note; the history keeps them all.
MAX_BATCH_LINES = 2000
# "run_in_terminal" writes through prompt-toolkit's run_in_terminal instead (for the bench).
WRITER_ENV = "LANCHAT_SHELL_WRITER"
CLEAR_SCROLLBACK = "\x1b[3J"  # xterm's "erase saved lines"; tmux and most terminals know it


class Printer:
    """A thread-safe queue of lines and the loop task that writes them."""

    def __init__(self, output: Output, style: BaseStyle) -> None:
        self.output = output
        self.style = style
        self.app: Application[Any] | None = None
        self.batches = 0
        self.repaints = 0
        self._lines: list[Line] = []
        self._repaint: list[Line] | None = None
        self._bell = False
        self._touched = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._in_terminal = False
        self.via_run_in_terminal = os.environ.get(WRITER_ENV) == "run_in_terminal"

    def put(self, line: Line | Fragments, *, bell: bool = False) -> None:
        """Queue one line (any thread); the loop task writes it soon."""
        item = line if isinstance(line, Line) else Line(line)
        with self._lock:
            self._lines.append(item)
            self._bell = self._bell or bell
        self.poke()

    def touch(self) -> None:
        """Redraw the prompt and toolbar soon (any thread); many calls make one redraw."""
        with self._lock:
            self._touched = True
        self.poke()

    def ring(self) -> None:
        """Ring the terminal bell soon (any thread), for a line not on screen."""
        with self._lock:
            self._bell = True
        self.poke()

    def reset(self, lines: list[Line]) -> None:
        """Write `lines` instead of what is queued, without clearing (any thread)."""
        with self._lock:
            self._lines = list(lines)
        self.poke()

    def repaint(self, lines: list[Line]) -> None:
        """Clear the screen and write `lines` instead of what is queued (any thread)."""
        with self._lock:
            self._repaint = lines
            self._lines = []
        self.poke()

    def poke(self) -> None:
        """Wake the writer: something was queued, or a held line may be ready."""
        with self._lock:
            if self._wake_pending or self._loop is None:
                return
            self._wake_pending = True
            loop, wake = self._loop, self._wake
        assert wake is not None
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop has closed; write_now() writes what is left
            pass

    async def run(self) -> None:
        """Write queued lines until cancelled; call inside the prompt's loop."""
        self._wake = asyncio.Event()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake_pending = bool(self._lines) or self._repaint is not None or \
                self._touched
        if self._wake_pending:
            self._wake.set()
        try:
            wait: float | None = None
            while True:
                if wait is None:
                    await self._wake.wait()
                else:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        pass
                self._wake.clear()
                with self._lock:
                    self._wake_pending = False
                await self._write_above_prompt()
                wait = self._next_hold()
                await asyncio.sleep(BATCH_S)
        finally:
            with self._lock:
                self._loop = None
                self._wake_pending = False

    def _next_hold(self) -> float | None:
        """Seconds until the held line at the head of the queue must be written anyway."""
        with self._lock:
            if not self._lines:
                return None
            return max(0.0, self._lines[0].hold_until - time.monotonic())

    def _take(self, force: bool = False) -> tuple[list[Fragments], bool, bool]:
        """What to write now: lines (up to a held one), the bell, and whether to clear."""
        now = time.monotonic()
        with self._lock:
            clear = self._repaint is not None
            items = self._repaint if self._repaint is not None else []
            self._repaint = None
            cut = len(self._lines)
            if not force:
                cut = next((i for i, line in enumerate(self._lines) if line.held(now)), cut)
            items, self._lines = items + self._lines[:cut], self._lines[cut:]
            bell, self._bell = self._bell, False
        lines = []
        for item in items:
            lines.append(item.render())
            if item.sent is not None and not item.sent.complete:
                item.shown_incomplete = True
        if len(lines) > MAX_BATCH_LINES:
            skipped = len(lines) - MAX_BATCH_LINES + 1
            note: Fragments = [("class:notice",
                                f"... {skipped} lines not shown; /history has them")]
            lines = [note, *lines[-(MAX_BATCH_LINES - 1):]]
        return lines, bell, clear

    async def _write_above_prompt(self) -> None:
        app = self.app
        if self.via_run_in_terminal and app is not None and app.is_running:
            lines, bell, clear = self._take()
            with self._lock:
                touched, self._touched = self._touched, False
            if touched and not (lines or clear):
                app.invalidate()
            if lines or clear:
                self._in_terminal = True
                try:
                    await run_in_terminal(lambda: self._write(lines, bell, clear))
                finally:
                    self._in_terminal = False
            return
        if app is not None and app.is_running and app.output.responds_to_cpr:
            await app.renderer.wait_for_cpr_responses()
        self.write_now()

    def write_now(self, *, force: bool = False) -> None:
        """Write what is queued above the prompt at once (on the prompt's loop thread);
        `force` writes held lines too (at exit)."""
        with self._lock:
            touched, self._touched = self._touched, False
        lines, bell, clear = self._take(force)
        app = self.app
        if not lines and not clear:
            if bell:
                self.output.bell()
                self.output.flush()
            if touched and app is not None and app.is_running:
                app.invalidate()
            return
        if app is None or not app.is_running or app.is_done or self._in_terminal:
            self._write(lines, bell, clear)
            return
        app.renderer.erase()
        self._write(lines, bell, clear)
        # Where the prompt now starts: the renderer asks the terminal (as prompt-toolkit
        # does after its own erase), unless keys are waiting to be read.
        if not app.key_processor.input_queue:
            app.renderer.request_absolute_cursor_position()
        app.invalidate()

    def _write(self, lines: list[Fragments], bell: bool, clear: bool) -> None:
        if clear:
            self.output.erase_screen()
            self.output.cursor_goto(0, 0)
            self.output.write_raw(CLEAR_SCROLLBACK)
            self.repaints += 1
        text: Fragments = []
        for line in lines:
            text.extend(line)
            text.append(("", "\n"))
        # prompt_toolkit.renderer's printer writes at once; the shortcut of the same name
        # would go through run_in_terminal (cooked mode: typed keys echo into the lines).
        print_formatted_text(self.output, FormattedText(text), self.style)
        if bell:
            self.output.bell()
        self.output.flush()
        self.batches += 1
