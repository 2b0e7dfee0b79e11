"""One line typed at the prompt: run it as a command or a message, and show the answer
in the current buffer; our own messages wait briefly for their delivery mark (UI thread)."""

from __future__ import annotations

import logging
import time

from lanchat.commands import CommandError, Context, execute
from lanchat.commands import Output as CommandOutput
from lanchat.node import Node
from lanchat.shell import render
from lanchat.shell.buffers import EVERYONE, Buffers, Kind, Line, Sent
from lanchat.shell.navigation import Navigator
from lanchat.shell.printer import Printer
from lanchat.shell.state import ShellState

log = logging.getLogger(__name__)

# An outgoing line waits this long for its delivery mark before it is written without it
# (a LAN delivery takes a few ms); later marks follow as a "delivered" line.
DELIVERY_WAIT_S = 0.3


class InputLine:
    """Runs typed lines and writes what they answer."""

    def __init__(self, node: Node, ctx: Context, state: ShellState, buffers: Buffers,
                 printer: Printer, navigator: Navigator) -> None:
        self.node = node
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
        """Our own message as a chat line in its buffer, waiting briefly for its mark."""
        data = out.data
        if not isinstance(data, dict) or "id" not in data or "to" not in data:
            return False
        if not data["id"]:
            return False
        to = str(data["to"])
        text = str(data.get("text", out.text))
        listed = data.get("peers", data.get("members"))  # everyone's or a room's
        recipients = [str(p) for p in listed] if isinstance(listed, list) else [to]
        if to == "all":
            key, kind, name, group = EVERYONE, Kind.EVERYONE, EVERYONE, True
        elif to.startswith("#"):
            key, kind, name, group = to, Kind.ROOM, to, True
        else:
            peer = self.state.peer(to)
            name = self.state.names.display(peer) if peer else to[:8]
            key, kind, group = to, Kind.DIRECT, False
        sent = Sent(str(data["id"]), recipients, group=group, key=key, text=text)
        hold = time.monotonic() + DELIVERY_WAIT_S
        own = render.chat_line(time.time(), self.state.own_id, self.node.nick, text)
        line = Line(own, sent, hold)
        with self.buffers.lock:
            shown = self.buffers.add(key, kind, name, line)
            if shown:
                self.printer.put(line)
        if not shown:  # sent from another buffer: show it here too, as `[me -> bob] text`
            echo = render.message_line(time.time(), self.state.own_id, self.node.nick,
                                       text, direct=True, to_nick=name)
            self.answer(Line(echo, sent, hold))
        return True
