"""The shell's half that needs the node: plugins, commands, the node itself and what runs
typed lines. The prompt (`app.Shell`) is drawn without any of it; this module and what it
imports load afterwards, off the prompt's thread, while the toolbar says "starting…"."""

from __future__ import annotations

from prompt_toolkit import PromptSession

from lanchat.assembly import open_node, plugin_bridge
from lanchat.commands import Context, build_registry
from lanchat.config import Config
from lanchat.plugins import Plugins
from lanchat.runtime import freeze_started
from lanchat.shell import render
from lanchat.shell.buffers import Buffers, Line
from lanchat.shell.input_line import InputLine
from lanchat.shell.local_commands import add_shell_commands
from lanchat.shell.navigation import Navigator
from lanchat.shell.printer import Printer
from lanchat.shell.router import Router
from lanchat.shell.state import ShellState
from lanchat.transfer import manager_of


class NodeSide:
    """Plugins, the command registry, the node (built, not started) and the parts of the
    shell that act on it, wired to the prompt's state, buffers, printer and router."""

    def __init__(self, config: Config, plugins: Plugins | None, state: ShellState,
                 buffers: Buffers, printer: Printer, router: Router,
                 session: PromptSession[str]) -> None:
        self.plugins = plugins if plugins is not None else Plugins(
            config.home, disabled=config.disabled_plugins)
        self.registry = build_registry(self.plugins)
        self.node = open_node(config, self.plugins)
        self.state = state
        self.buffers = buffers
        self.ctx = Context(self.node, self.registry, self.plugins)
        self.navigator = Navigator(self.node, self.ctx, state, buffers, printer, session)
        self.input = InputLine(self.node, self.ctx, state, buffers, printer, self.navigator,
                               router.typed)
        add_shell_commands(self.registry, self.navigator)
        self.node.subscribe(router.on_event)
        self.node.subscribe(plugin_bridge(self.node, self.plugins))
        self.started = False

    def start(self) -> Line:
        """Start the node (raise NodeError if it cannot), run the plugins' start-up hook
        and fill the state from it; return the banner line."""
        for failure in self.plugins.failures:
            self.node.emit("error", code="plugin_failed",
                           message=f"plugin {failure.name} disabled ({failure.where}): "
                                   f"{failure.error}")
        self.node.start()
        self.started = True
        self.plugins.call("lanchat_startup", node=self.node)
        freeze_started()
        info = self.node.info()
        self.state.own_id, self.state.own_nick = info["id"], info["nick"]
        manager = manager_of(self.node)
        self.state.transfers_source = manager.transfers if manager is not None else None
        self.state.refresh_transfers()
        self.state.load(self.node.peers())
        self.navigator.set_target(self.buffers.current)
        return Line(render.banner(info))

    def close(self) -> None:
        """Tell plugins, say bye to peers (a node that never started: only close it)."""
        if self.started:
            self.plugins.call("lanchat_shutdown", node=self.node)
        self.node.close()
        self.plugins.close()
