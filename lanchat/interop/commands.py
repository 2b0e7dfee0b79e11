"""Slash commands for foreign peers: a default plugin through `lanchat_register_commands`."""

from __future__ import annotations

from lanchat.commands import CommandError, CommandRegistry, Context, Output, split_words
from lanchat.hookspecs import hookimpl
from lanchat.text import safe_line

MAX_PIN_CHARS = 32


def _pin(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if len(words) != 2:
        raise CommandError("usage: /pin PEER CODE")
    peer = ctx.resolve(words[0])
    name = safe_line(peer["nick"])
    if peer.get("kind") != "localsend":
        raise CommandError(f"{name} is not a LocalSend device; only those ask for a PIN")
    code = words[1]
    if not 0 < len(code) <= MAX_PIN_CHARS or not code.isprintable():
        raise CommandError(f"a PIN is 1-{MAX_PIN_CHARS} printable characters")
    kind = next((e for e in ctx.node.extensions if getattr(e, "kind", "") == "localsend"), None)
    if kind is None:
        raise CommandError("LocalSend is off in this node (--no-localsend)")
    kind.set_pin(peer["id"], code)
    return Output(f"the PIN for {name} is set; /file to it again",
                  {"peer": peer["id"], "pin": "set"})


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """The commands for foreign peers."""
    registry.add("pin", _pin, help="give the PIN a LocalSend device asks for",
                 usage="/pin PEER CODE")
