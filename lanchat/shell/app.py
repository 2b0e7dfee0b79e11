"""The shell: draws the prompt first, then builds and starts the node behind it
(`node_side`) and wires node, commands, buffers, printer, completer, toolbar and keys into
one prompt. Lines typed while the node starts are run, in order, once it is up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style

from lanchat.errors import NodeError
from lanchat.protocol import MAX_TEXT_CHARS
from lanchat.shell import render
from lanchat.shell.buffers import NOTICES, Buffers, Kind, Level, Line
from lanchat.shell.completer import ShellCompleter
from lanchat.shell.key_bindings import shell_bindings
from lanchat.shell.paste import guard_pastes
from lanchat.shell.printer import Printer
from lanchat.shell.router import Router
from lanchat.shell.state import ShellState
from lanchat.shell.toolbar import create_toolbar_tokens_func, current_name
from lanchat.text import safe_text

if TYPE_CHECKING:  # loaded after the prompt is drawn
    from lanchat.commands import CommandRegistry
    from lanchat.config import Config
    from lanchat.node import Node
    from lanchat.plugins import Plugins
    from lanchat.shell.node_side import NodeSide

log = logging.getLogger(__name__)

HISTORY_FILE = "history"
# A line longer than this cannot be sent (a message holds MAX_TEXT_CHARS; a command adds
# its words): a paste that would pass it is refused at once.
MAX_INPUT_CHARS = MAX_TEXT_CHARS + 256
# The node starts once the prompt is drawn; should no draw be seen by then, it starts anyway.
DRAW_WAIT_S = 1.0


class HeldHistory(FileHistory):
    """The prompt's history file, written only once the node holds the home: lines typed
    while it starts are kept until then (and never written if it cannot start)."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename)
        self._held: list[str] | None = []

    def store_string(self, string: str) -> None:
        """Write one line's entry, or keep it until `open()`."""
        if self._held is not None:
            self._held.append(string)
        else:
            super().store_string(string)

    def open(self) -> None:
        """The home is ours: write what was kept, and from now on each line at once."""
        held, self._held = self._held or [], None
        for string in held:
            super().store_string(string)


class Shell:
    """One interactive session over one node: the prompt first, the node behind it."""

    max_input_chars = MAX_INPUT_CHARS

    def __init__(self, config: Config, *, input: Input | None = None,
                 output: Output | None = None, plugins: Plugins | None = None) -> None:
        self.config = config
        self._plugins = plugins
        self.state = ShellState(own_nick=config.nick)
        self.state.starting = True
        self.buffers = Buffers(config.home)
        style = Style.from_dict(render.STYLE_RULES)
        self.history = HeldHistory(str(config.home / HISTORY_FILE))
        self.back: NodeSide | None = None  # built off the prompt's thread (`_open`)
        self.up = False  # the node has started and typed lines run at once (UI thread)
        self.start_error: NodeError | None = None
        self._crash: BaseException | None = None
        self._pending: deque[Callable[[], None]] = deque()  # keys pressed while starting
        self.session: PromptSession[str] = PromptSession(
            input=input, output=output, history=self.history,
            completer=ShellCompleter(self._registry, lambda: self.state.peers,
                                     lambda: self.buffers.views),
            complete_while_typing=False, multiline=True, key_bindings=shell_bindings(self),
            bottom_toolbar=create_toolbar_tokens_func(self.state, self.buffers,
                                                      self._columns),
            style=style, include_default_pygments_style=False,
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
            erase_when_done=True, enable_open_in_editor=False)
        self.paste_parser = guard_pastes(self.session.input, MAX_INPUT_CHARS)
        self.printer = Printer(self.session.output, style)
        self.printer.app = self.session.app
        self.router = Router(self.state, self.buffers, self.printer, self._redraw,
                             self._save_soon)
        self._banner = Line([])
        self._drawn: asyncio.Event | None = None
        self._load_task: asyncio.Task[None] | None = None
        self.session.app.after_render += self._on_render

    @property
    def node(self) -> Node:
        """The node (built once the prompt is drawn)."""
        return self._back.node

    @property
    def _back(self) -> NodeSide:
        if self.back is None:
            raise RuntimeError("the node is not built yet")
        return self.back

    def _registry(self) -> CommandRegistry | None:
        return self.back.registry if self.back is not None else None

    def _columns(self) -> int:
        return self.session.app.output.get_size().columns

    def _redraw(self) -> None:
        self.printer.touch()  # the toolbar changed: redrawn with the next batch
        self._save_soon()

    def _save_soon(self) -> None:
        if self.back is not None:
            self.back.navigator.save_soon()

    def _on_render(self, _app: object) -> None:
        if self._drawn is not None:
            self._drawn.set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Build and start the node now, before `run` (which otherwise does it behind the
        drawn prompt); raise NodeError if it cannot start."""
        self._open()
        self._started()

    def _open(self) -> None:
        """Import, build and start the node side (blocking: off the prompt's thread)."""
        from lanchat.shell.node_side import NodeSide

        self.back = NodeSide(self.config, self._plugins, self.state, self.buffers,
                             self.printer, self.router, self.session)
        self._banner = self.back.start()

    def _started(self) -> None:
        """The node is up (UI thread): history is written, queued keys run in order."""
        self.history.open()
        self.state.starting = False
        self.up = True
        self.printer.touch()
        while self._pending and not self._quitting():
            action = self._pending.popleft()
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - as a key's own failure would not
                log.debug("queued key failed", exc_info=True)
                self._back.input.answer(render.error(f"{type(exc).__name__}: {exc}"))
        self._pending.clear()  # after /quit: the prompt is ending

    def _when_up(self, action: Callable[[], None]) -> None:
        """Run a key's action now, or queue it until the node is up."""
        if self.up:
            action()
        else:
            self._pending.append(action)

    def _quitting(self) -> bool:
        return self.start_error is not None or self._crash is not None or (
            self.back is not None and self.back.ctx.quit)

    async def _boot(self) -> None:
        """Once the prompt is drawn: start the node in a thread, then run what was typed.
        A start that fails ends the prompt (`run` reports it)."""
        if self._drawn is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drawn.wait(), DRAW_WAIT_S)
        try:
            await asyncio.to_thread(self._open)
        except NodeError as exc:
            self.start_error = exc
        except Exception as exc:  # noqa: BLE001 - raised again once the terminal is back
            self._crash = exc
        if self._quitting():
            self._pending.clear()
            self._end_prompt()
            return
        self._started()
        self.printer.write_now()
        if self._quitting():
            self._end_prompt()
            return
        self._load_soon()

    def _end_prompt(self) -> None:
        app = self.session.app
        if app.is_running and not app.is_done:
            app.exit(result="")

    def _load_soon(self) -> None:
        if self._load_task is None and self.buffers.loading:
            self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        """Read each buffer's scrollback and unread count from the store (off the prompt's
        thread, so the prompt is up at once), then write the current buffer and banner."""
        from lanchat.shell.history import load_scrollback

        try:
            await asyncio.to_thread(load_scrollback, self.node, self.buffers, self.state)
        except Exception as exc:  # noqa: BLE001 - the shell goes on without scrollback
            self.router.add(NOTICES, Kind.NOTICES, NOTICES, Line(render.error(
                f"could not read the history for the buffers: {exc}")))
        self.loaded()

    def loaded(self) -> None:
        """Scrollback is in: show the current buffer's tail and the banner."""
        from lanchat.shell.navigation import REPAINT_LINES

        with self.buffers.lock:  # what arrived meanwhile is in the tail already
            self.buffers.loaded()
            tail = self.buffers.tail(self.buffers.current, REPAINT_LINES)
            self.buffers.add(NOTICES, Kind.NOTICES, NOTICES, self._banner, level=Level.LOW)
            self.printer.reset([*tail, self._banner])
        self.printer.touch()

    def run(self) -> int:
        """Prompt until /quit or Ctrl-D; then say bye and close the node. 1 if the node
        could not start (`start_error` says why)."""
        handler = _LogToPrinter(self.router)
        root = logging.getLogger()
        saved = root.handlers[:]
        root.handlers = [h for h in saved if not _writes_to_terminal(h)] + [handler]
        try:
            asyncio.run(self._main())
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
            root.handlers = saved
        if self._crash is not None:
            raise self._crash
        return 1 if self.start_error is not None else 0

    def close(self) -> None:
        """Tell plugins, say bye to peers, keep the read markers, write what is left (a
        Ctrl-C or SIGTERM meanwhile does not cut it short: `runtime.closing`)."""
        from lanchat.runtime import closing

        with closing():
            if self.back is not None:
                self.back.close()
            if self.start_error is not None or self._crash is not None:
                return  # nothing was shown but the prompt, erased already
            self.buffers.save()
            self.printer.write_now(force=True)

    async def _main(self) -> None:
        self._drawn = asyncio.Event()
        pump = asyncio.create_task(self.printer.run())
        boot = asyncio.create_task(self._boot()) if self.back is None else None
        if self.up:  # started before `run` (`start`)
            self._load_soon()
        try:
            while not self._quitting():
                try:
                    await self.session.prompt_async(self._prompt)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    if boot is not None and not boot.done():
                        await boot  # Ctrl-D while starting: what was typed runs first
                    if not self._quitting():
                        self.printer.put(render.notice("bye"))
                    break
        finally:
            for task in (pump, self._load_task, boot):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _prompt(self) -> render.Fragments:
        return [("class:prompt", f"{current_name(self.buffers)}> ")]

    # -- what the keys do (UI thread; queued while the node starts) ----------------------

    def switch(self, ref: str) -> None:
        """Go to a buffer by number, name, room or peer; raise CommandError if none."""
        self._when_up(lambda: self._back.navigator.switch(ref))

    def step(self, delta: int) -> None:
        """The next or previous buffer."""
        self._when_up(lambda: self._back.navigator.step(delta))

    def jump_active(self) -> None:
        """The buffer with the most pressing unread activity, if any."""
        self._when_up(lambda: self._back.navigator.jump_active())

    def paste_refused(self, chars: int) -> None:
        """A paste longer than a line can be: say so at once."""
        if self.paste_parser is not None:
            chars = max(chars, self.paste_parser.pasted_chars)
        line = Line(render.error(
            f"paste of {chars:,} characters refused: a message holds at most "
            f"{MAX_TEXT_CHARS:,}; send it as a file: /file PEER PATH"))
        with self.buffers.lock:  # in the current buffer, and on screen at once
            buf = self.buffers.get(self.buffers.current)
            if buf is not None:
                self.buffers.add(buf.key, buf.kind, buf.name, line)
            self.printer.put(line)
        self.printer.write_now()

    def submit(self, line: str) -> None:
        """Enter was pressed: run the line, show its answer, leave on /quit (once the node
        is up: lines typed before wait for it, in order)."""
        self._when_up(lambda: self._run_line(line))

    def _run_line(self, line: str) -> None:
        back = self._back
        back.input.handle(line)
        self.printer.write_now()
        if back.ctx.quit:
            self._end_prompt()


class _LogToPrinter(logging.Handler):
    """Log records go to the notices buffer (and above the prompt) instead of across it."""

    def __init__(self, router: Router) -> None:
        super().__init__(logging.WARNING)
        self.router = router

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record as a red line."""
        try:
            line = render.error(f"{record.name}: {safe_text(record.getMessage())}")
            self.router.add(NOTICES, Kind.NOTICES, NOTICES, Line(line))
        except Exception:  # noqa: BLE001
            self.handleError(record)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and stream in (sys.stderr, sys.stdout)


def _is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_shell(config: Config, no_terminal: Callable[[Config], int] | None = None) -> int:
    """The interactive shell; without a terminal, `no_terminal(config)` (the caller's
    choice: the CLI runs the headless text mode), else an error."""
    if not _is_terminal():
        if no_terminal is not None:
            return no_terminal(config)
        print("lanchat: the shell needs a terminal on stdin and stdout", file=sys.stderr)
        return 2
    shell = Shell(config)
    code = shell.run()
    if shell.start_error is not None:
        print(f"lanchat: {shell.start_error}", file=sys.stderr)
    return code
