"""The shell: wires node, commands, printer, completer, toolbar and keys into one prompt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style

from lanchat.assembly import open_node, plugin_bridge
from lanchat.commands import CommandError, CommandRegistry, Context, build_registry, execute
from lanchat.commands import Output as CommandOutput
from lanchat.config import Config
from lanchat.errors import NodeError
from lanchat.events import Event
from lanchat.plugins import Plugins
from lanchat.shell import render
from lanchat.shell.completer import ShellCompleter
from lanchat.shell.key_bindings import shell_bindings
from lanchat.shell.printer import Printer
from lanchat.shell.state import ShellState
from lanchat.shell.toolbar import create_toolbar_tokens_func, target_label
from lanchat.text import safe_line, safe_text

HISTORY_FILE = "history"


class Shell:
    """One interactive session over one node."""

    def __init__(self, config: Config, *, input: Input | None = None,
                 output: Output | None = None, plugins: Plugins | None = None) -> None:
        self.config = config
        self.plugins = plugins if plugins is not None else Plugins(config.home)
        self.registry = build_registry(self.plugins)
        self.node = open_node(config, self.plugins)
        self.state = ShellState(own_nick=config.nick)
        self.ctx = Context(self.node, self.registry, self.plugins)
        add_bell_command(self.registry, self.state)
        self.session: PromptSession[str] = PromptSession(
            input=input, output=output, history=FileHistory(str(config.home / HISTORY_FILE)),
            completer=ShellCompleter(self.registry, lambda: self.state.peers),
            complete_while_typing=False, multiline=True, key_bindings=shell_bindings(self.submit),
            bottom_toolbar=create_toolbar_tokens_func(self.state),
            style=Style.from_dict(render.STYLE_RULES), include_default_pygments_style=False,
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
            erase_when_done=True, enable_open_in_editor=False)
        self.printer = Printer(self.session.output, Style.from_dict(render.STYLE_RULES))
        self.printer.app = self.session.app
        self.node.subscribe(self._on_event)
        self.node.subscribe(plugin_bridge(self.node, self.plugins))

    # -- event thread ------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Render the event (before the state forgets old nicks), then update the state."""
        try:
            line = render.event_lines(event, self.state)
        except Exception:  # noqa: BLE001 - an odd event never stops the others
            line = render.notice(f"-- {safe_line(event.name)}", event.ts)
        self.state.apply(event)
        if line is not None:
            bell = self.state.bell and event.name == "message" and event["to"] == "direct"
            self.printer.put(line, bell=bell)
        elif event.name.startswith("peer_") and self.session.app.is_running:
            self.session.app.invalidate()  # the toolbar counts peers

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the node and show the banner; raises NodeError."""
        for failure in self.plugins.failures:
            self.node.emit("error", code="plugin_failed",
                           message=f"plugin {failure.name} disabled ({failure.where}): "
                                   f"{failure.error}")
        self.node.start()
        self.plugins.call("lanchat_startup", node=self.node)
        info = self.node.info()
        self.state.own_id, self.state.own_nick = info["id"], info["nick"]
        self.state.transfers_source = _transfers_source(self.node)
        self.state.load(self.node.peers())
        self.printer.put(render.banner(info), first=True)

    def run(self) -> int:
        """Prompt until /quit or Ctrl-D; then say bye and close the node."""
        handler = _LogToPrinter(self.printer)
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
        """Tell plugins, say bye to peers, write what is left."""
        self.plugins.call("lanchat_shutdown", node=self.node)
        self.node.close()
        self.plugins.close()
        self.printer.write_now()

    async def _main(self) -> None:
        pump = asyncio.create_task(self.printer.run())
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
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _prompt(self) -> render.Fragments:
        return [("class:prompt", f"{target_label(self.state)}> ")]

    # -- input ---------------------------------------------------------------------------

    def submit(self, line: str) -> None:
        """Enter was pressed: run the line, show its answer, leave on /quit."""
        self.handle(line)
        self.printer.write_now()
        if self.ctx.quit and self.session.app.is_running:
            self.session.app.exit(result="")

    def handle(self, line: str) -> None:
        """Run one input line and queue what it answers."""
        self.ctx.state["unread"] = dict(self.state.unread)
        target = self.ctx.target
        try:
            out = execute(self.ctx, line)
        except CommandError as exc:
            self.printer.put(render.echo(line))
            self.printer.put(render.error(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a command bug never ends the shell
            logging.getLogger(__name__).debug("command failed", exc_info=True)
            self.printer.put(render.echo(line))
            self.printer.put(render.error(f"internal error: {type(exc).__name__}: {exc}"))
            return
        if self.ctx.target != target:
            self.state.set_target(self.ctx.target)
        if out is None:
            return
        sent = self._sent_line(out)
        if sent is not None:
            self.printer.put(sent)
            return
        if line.strip().startswith("/"):
            self.printer.put(render.echo(line.strip()))
        if out.text:
            self.printer.put(render.output(out.text))

    def _sent_line(self, out: CommandOutput) -> render.Fragments | None:
        """Our own message as a chat line, when `out` answers a send."""
        data = out.data
        if not isinstance(data, dict) or "id" not in data or "to" not in data:
            return None
        to = str(data["to"])
        peer = self.state.peer(to)
        prefix = (f"-> all ({len(data.get('peers', []))}): " if to == "all"
                  else f"-> {peer.nick if peer else ''}: ")
        text = data.get("text")
        if text is None and out.text.startswith(prefix):
            text = out.text[len(prefix):]
        if text is None:
            return render.notice(safe_text(out.text))
        return render.message_line(time.time(), self.state.own_id, self.node.nick, str(text),
                                   direct=to != "all",
                                   to_nick=peer.nick if peer else to[:8])


def add_bell_command(registry: CommandRegistry, state: ShellState) -> None:
    """Register `/bell [on|off]` unless a plugin has taken the name."""

    def bell(ctx: Context, args: str) -> CommandOutput:
        word = args.strip().lower()
        if word not in ("", "on", "off"):
            raise CommandError("usage: /bell [on|off]")
        state.bell = (not state.bell) if not word else word == "on"
        return CommandOutput(f"bell {'on' if state.bell else 'off'} for direct messages",
                             {"bell": state.bell})

    saved, registry.current_plugin = registry.current_plugin, "shell"
    try:
        registry.add("bell", bell, help="ring the terminal bell on a direct message",
                     usage="/bell [on|off]")
    except ValueError:
        pass
    finally:
        registry.current_plugin = saved


class _LogToPrinter(logging.Handler):
    """Log records above the prompt instead of across it."""

    def __init__(self, printer: Printer) -> None:
        super().__init__(logging.WARNING)
        self.printer = printer

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record as a red line."""
        try:
            self.printer.put(render.error(f"{record.name}: {record.getMessage()}"))
        except Exception:  # noqa: BLE001
            self.handleError(record)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and stream in (sys.stderr, sys.stdout)


def _transfers_source(node: Any) -> Any:
    """The `active_transfers()` of a node extension, if one offers it."""
    for ext in getattr(node, "extensions", []):
        source = getattr(ext, "active_transfers", None)
        if callable(source):
            return source
    return None


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
