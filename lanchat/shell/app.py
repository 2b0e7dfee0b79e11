"""The shell: wires node, commands, buffers, printer, completer, toolbar and keys into one
prompt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style

from lanchat.assembly import open_node, plugin_bridge
from lanchat.commands import Context, build_registry
from lanchat.config import Config
from lanchat.errors import NodeError
from lanchat.plugins import Plugins
from lanchat.protocol import MAX_TEXT_CHARS
from lanchat.runtime import freeze_started
from lanchat.shell import render
from lanchat.shell.buffers import NOTICES, Buffers, Kind, Level, Line
from lanchat.shell.completer import ShellCompleter
from lanchat.shell.history import load_scrollback
from lanchat.shell.input_line import InputLine
from lanchat.shell.key_bindings import shell_bindings
from lanchat.shell.local_commands import add_shell_commands
from lanchat.shell.navigation import REPAINT_LINES, Navigator
from lanchat.shell.paste import guard_pastes
from lanchat.shell.printer import Printer
from lanchat.shell.router import Router
from lanchat.shell.state import ShellState
from lanchat.shell.toolbar import create_toolbar_tokens_func, current_name
from lanchat.text import safe_text
from lanchat.transfer import manager_of

HISTORY_FILE = "history"
# A line longer than this cannot be sent (a message holds MAX_TEXT_CHARS; a command adds
# its words): a paste that would pass it is refused at once.
MAX_INPUT_CHARS = MAX_TEXT_CHARS + 256


class Shell:
    """One interactive session over one node."""

    max_input_chars = MAX_INPUT_CHARS

    def __init__(self, config: Config, *, input: Input | None = None,
                 output: Output | None = None, plugins: Plugins | None = None) -> None:
        self.config = config
        self.plugins = plugins if plugins is not None else Plugins(
            config.home, disabled=config.disabled_plugins)
        self.registry = build_registry(self.plugins)
        self.node = open_node(config, self.plugins)
        self.state = ShellState(own_nick=config.nick)
        self.buffers = Buffers(config.home)
        self.ctx = Context(self.node, self.registry, self.plugins)
        style = Style.from_dict(render.STYLE_RULES)
        self.session: PromptSession[str] = PromptSession(
            input=input, output=output, history=FileHistory(str(config.home / HISTORY_FILE)),
            completer=ShellCompleter(self.registry, lambda: self.state.peers,
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
        self.navigator = Navigator(self.node, self.ctx, self.state, self.buffers,
                                   self.printer, self.session)
        self.router = Router(self.state, self.buffers, self.printer, self._redraw,
                             self.navigator.save_soon)
        self.input = InputLine(self.node, self.ctx, self.state, self.buffers, self.printer,
                               self.navigator, self.router.typed)
        add_shell_commands(self.registry, self.navigator)
        self.node.subscribe(self.router.on_event)
        self.node.subscribe(plugin_bridge(self.node, self.plugins))
        self._banner = Line([])

    def _columns(self) -> int:
        return self.session.app.output.get_size().columns

    def _redraw(self) -> None:
        self.printer.touch()  # the toolbar changed: redrawn with the next batch
        self.navigator.save_soon()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the node; the scrollback is read once the prompt is up (`_load`)."""
        for failure in self.plugins.failures:
            self.node.emit("error", code="plugin_failed",
                           message=f"plugin {failure.name} disabled ({failure.where}): "
                                   f"{failure.error}")
        self.node.start()
        self.plugins.call("lanchat_startup", node=self.node)
        freeze_started()
        info = self.node.info()
        self.state.own_id, self.state.own_nick = info["id"], info["nick"]
        manager = manager_of(self.node)
        self.state.transfers_source = manager.transfers if manager is not None else None
        self.state.refresh_transfers()
        self.state.load(self.node.peers())
        self.navigator.set_target(self.buffers.current)
        self._banner = Line(render.banner(info))

    async def _load(self) -> None:
        """Read each buffer's scrollback and unread count from the store (off the prompt's
        thread, so the prompt is up at once), then write the current buffer and banner."""
        try:
            await asyncio.to_thread(load_scrollback, self.node, self.buffers, self.state)
        except Exception as exc:  # noqa: BLE001 - the shell goes on without scrollback
            self.router.add(NOTICES, Kind.NOTICES, NOTICES, Line(render.error(
                f"could not read the history for the buffers: {exc}")))
        self.loaded()

    def loaded(self) -> None:
        """Scrollback is in: show the current buffer's tail and the banner."""
        with self.buffers.lock:  # what arrived meanwhile is in the tail already
            self.buffers.loaded()
            tail = self.buffers.tail(self.buffers.current, REPAINT_LINES)
            self.buffers.add(NOTICES, Kind.NOTICES, NOTICES, self._banner, level=Level.LOW)
            self.printer.reset([*tail, self._banner])
        self.printer.touch()

    def run(self) -> int:
        """Prompt until /quit or Ctrl-D; then say bye and close the node."""
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
        return 0

    def close(self) -> None:
        """Tell plugins, say bye to peers, keep the read markers, write what is left."""
        self.plugins.call("lanchat_shutdown", node=self.node)
        self.node.close()
        self.plugins.close()
        self.buffers.save()
        self.printer.write_now(force=True)

    async def _main(self) -> None:
        pump = asyncio.create_task(self.printer.run())
        load = asyncio.create_task(self._load()) if self.buffers.loading else None
        try:
            while not self.ctx.quit:
                try:
                    await self.session.prompt_async(self._prompt)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    self.printer.put(render.notice("bye"))
                    break
        finally:
            for task in (pump, load):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _prompt(self) -> render.Fragments:
        return [("class:prompt", f"{current_name(self.buffers)}> ")]

    # -- what the keys do (UI thread) ------------------------------------------------------

    def switch(self, ref: str) -> None:
        """Go to a buffer by number, name, room or peer; raise CommandError if none."""
        self.navigator.switch(ref)

    def step(self, delta: int) -> None:
        """The next or previous buffer."""
        self.navigator.step(delta)

    def jump_active(self) -> None:
        """The buffer with the most pressing unread activity, if any."""
        self.navigator.jump_active()

    def paste_refused(self, chars: int) -> None:
        """A paste longer than a line can be: say so at once."""
        if self.paste_parser is not None:
            chars = max(chars, self.paste_parser.pasted_chars)
        self.input.answer(render.error(
            f"paste of {chars:,} characters refused: a message holds at most "
            f"{MAX_TEXT_CHARS:,}; send it as a file: /file PEER PATH"))
        self.printer.write_now()

    def submit(self, line: str) -> None:
        """Enter was pressed: run the line, show its answer, leave on /quit."""
        self.input.handle(line)
        self.printer.write_now()
        if self.ctx.quit and self.session.app.is_running:
            self.session.app.exit(result="")


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
    try:
        shell.start()
    except NodeError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 1
    return shell.run()
