"""Lines above the prompt, batched: the event thread queues, one loop task writes.

Writing each line on its own redraws the prompt every time and falls behind at high
rates; here a task in the prompt's loop writes everything queued at once, at most every
BATCH_S, with the prompt erased before and redrawn after, so typing is never torn.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from prompt_toolkit.application import Application, run_in_terminal
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.output import Output
from prompt_toolkit.renderer import print_formatted_text
from prompt_toolkit.styles import BaseStyle

from lanchat.shell.render import Fragments

BATCH_S = 0.04
# More than this in one batch (50,000 lines/s) is more than anyone reads: the oldest are
# left out with a note; the history keeps them all.
MAX_BATCH_LINES = 2000
# "run_in_terminal" writes through prompt-toolkit's run_in_terminal instead (for the bench).
WRITER_ENV = "LANCHAT_SHELL_WRITER"


class Printer:
    """A thread-safe queue of lines and the loop task that writes them."""

    def __init__(self, output: Output, style: BaseStyle) -> None:
        self.output = output
        self.style = style
        self.app: Application[Any] | None = None
        self.batches = 0
        self._lines: list[Fragments] = []
        self._bell = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self.via_run_in_terminal = os.environ.get(WRITER_ENV) == "run_in_terminal"

    def put(self, line: Fragments, *, bell: bool = False, first: bool = False) -> None:
        """Queue one line (any thread); the loop task writes it soon. `first` puts it
        ahead of lines not yet written (the banner, before early join notices)."""
        with self._lock:
            if first:
                self._lines.insert(0, line)
            else:
                self._lines.append(line)
            self._bell = self._bell or bell
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
            self._wake_pending = bool(self._lines)
        if self._wake_pending:
            self._wake.set()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._write_above_prompt()
                await asyncio.sleep(BATCH_S)
        finally:
            with self._lock:
                self._loop = None
                self._wake_pending = False

    def _take(self) -> tuple[list[Fragments], bool]:
        with self._lock:
            lines, bell = self._lines, self._bell
            self._lines, self._bell = [], False
            self._wake_pending = False
        if len(lines) > MAX_BATCH_LINES:
            skipped = len(lines) - MAX_BATCH_LINES + 1
            note: Fragments = [("class:notice",
                                f"... {skipped} lines not shown; /history has them")]
            lines = [note, *lines[-(MAX_BATCH_LINES - 1):]]
        return lines, bell

    async def _write_above_prompt(self) -> None:
        app = self.app
        if self.via_run_in_terminal and app is not None and app.is_running:
            lines, bell = self._take()
            if lines:
                await run_in_terminal(lambda: self._write(lines, bell))
            return
        if app is not None and app.is_running and app.output.responds_to_cpr:
            await app.renderer.wait_for_cpr_responses()
        self.write_now()

    def write_now(self) -> None:
        """Write what is queued above the prompt at once (on the prompt's loop thread)."""
        lines, bell = self._take()
        if not lines:
            return
        app = self.app
        if app is None or not app.is_running or app.is_done or app._running_in_terminal:
            self._write(lines, bell)
            return
        app.renderer.erase()
        self._write(lines, bell)
        app._request_absolute_cursor_position()
        app._redraw()

    def _write(self, lines: list[Fragments], bell: bool) -> None:
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
