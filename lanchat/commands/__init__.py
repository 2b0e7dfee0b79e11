"""Slash commands: the registry and the context a command runs in (`registry`), the line
parser (`parse`), and the built-in commands (`builtins`, grouped as `messages`, `peers` and
`meta`). The built-ins are a default plugin: this package is registered as the plugin
`lanchat.commands`, through the same `lanchat_register_commands` hook any plugin uses."""

from lanchat.commands.builtins import lanchat_register_commands
from lanchat.commands.parse import execute, first_word, split_words
from lanchat.commands.registry import (
    Command,
    CommandError,
    CommandRegistry,
    Context,
    Handler,
    Output,
    TargetSender,
    build_registry,
    queued_id,
)

__all__ = ["Command", "CommandError", "CommandRegistry", "Context", "Handler", "Output",
           "TargetSender", "build_registry", "execute", "first_word",
           "lanchat_register_commands", "queued_id", "split_words"]
