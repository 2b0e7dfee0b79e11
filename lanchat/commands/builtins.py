"""The built-in commands: a default plugin, registered through `lanchat_register_commands`
like any other."""

from __future__ import annotations

from lanchat.commands import messages, meta, peers
from lanchat.commands.registry import CommandRegistry
from lanchat.hookspecs import hookimpl


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """The built-in commands."""
    messages.register(registry)
    peers.register(registry)
    meta.register(registry)
