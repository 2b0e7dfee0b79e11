"""One line typed at the prompt: run it as a command or a message, and show the answer
in the current buffer (UI thread). Our own messages are drawn by the router from the node's
`sent` event, like those sent by any other face."""

from __future__ import annotations

import logging
from collections.abc import Callable

from lanchat.commands import CommandError, Context, execute
from lanchat.commands import Output as CommandOutput
from lanchat.node import Node
from lanchat.shell import render
from lanchat.shell.buffers import Buffers, Kind, Line
from lanchat.shell.navigation import Navigator
from lanchat.shell.printer import Printer
from lanchat.shell.state import ShellState

log = logging.getLogger(__name__)


class InputLine:
    """Runs typed lines and writes what they answer."""

    def __init__(self, node: Node, ctx: Context, state: ShellState, buffers: Buffers,
                 printer: Printer, navigator: Navigator,
                 echo: Callable[[str, str], None]) -> None:
        self.node = node
        self.echo = echo  # Router.typed: (message id, buffer it was typed in)
        self.ctx = ctx
        self.state = state
        self.buffers = buffers
        self.printer = printer
        self.navigator = navigator

    def handle(self, line: str) -> None:
        """Run one input line and show what it answers in the current buffer."""
        self.ctx.state["unread"] = self.buffers.unread_by_key()
        current = self.buffers.get(self.buffers.current)
        assert current is not None
        command = line.lstrip().startswith("/") and not line.lstrip().startswith("//")
        if not command and line.strip() and current.kind is Kind.NOTICES:
            self.answer(render.error("this buffer shows notices only; Alt-2 or /buffer all "
                                     "talks to everyone"))
            return
        target = self.ctx.target
        try:
            out = execute(self.ctx, line)
        except CommandError as exc:
            self.answer(render.echo(line), render.error(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a command bug never ends the shell
            log.debug("command failed", exc_info=True)
            self.answer(render.echo(line),
                        render.error(f"internal error: {type(exc).__name__}: {exc}"))
            return
        finally:
            self.state.refresh_transfers()
        self.navigator.follow(target)
        if out is None:
            return
        if self._sent(out):
            return
        answer = [render.echo(line.strip())] if command else []
        if out.text:
            answer.append(render.output(out.text))
        self.answer(*answer)

    def answer(self, *lines: render.Fragments | Line) -> None:
        """Lines for the current buffer only (command echo and answers)."""
        key = self.buffers.current
        buf = self.buffers.get(key)
        assert buf is not None
        for item in lines:
            line = item if isinstance(item, Line) else Line(item)
            with self.buffers.lock:
                self.buffers.add(key, buf.kind, buf.name, line)
                self.printer.put(line)

    def _sent(self, out: CommandOutput) -> bool:
        """A message was queued: its line comes with the node's `sent` event (the router
        draws it, as for a line sent from the web window or a plugin); typed in another
        buffer than its own, it is echoed here too."""
        msg_id = out.queued
        if not msg_id:
            return False
        self.echo(msg_id, self.buffers.current)
        return True
