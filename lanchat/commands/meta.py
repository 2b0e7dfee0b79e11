"""Built-in commands about lanchat itself: /help, /plugins, /quit."""

from __future__ import annotations

from lanchat.commands.registry import CommandError, CommandRegistry, Context, Output


def _help(ctx: Context, args: str) -> Output | None:
    if args:
        command = ctx.registry.get(args.split()[0])
        if command is None:
            raise CommandError(f"unknown command {args.split()[0]}; /help lists them")
        return Output(f"{command.usage}\n  {command.help}",
                      {"name": command.name, "usage": command.usage, "help": command.help,
                       "plugin": command.plugin})
    commands = ctx.registry.all()
    text = "\n".join(f"{c.usage:<28} {c.help}" for c in commands)
    return Output(text, [{"name": c.name, "usage": c.usage, "help": c.help,
                          "plugin": c.plugin} for c in commands])


def _plugins(ctx: Context, args: str) -> Output | None:
    listing = ctx.plugins.listing() if ctx.plugins is not None else []
    lines = []
    for p in listing:
        state = "" if p["enabled"] else f"  DISABLED: {p.get('error', '')}"
        lines.append(f"{p['name']:<20} {p['source']}{state}")
    return Output("\n".join(lines) or "no plugins", listing)


def _quit(ctx: Context, args: str) -> Output | None:
    ctx.quit = True
    return Output("bye", {"quit": True})


def register(registry: CommandRegistry) -> None:
    """Add /help, /plugins and /quit."""
    registry.add("help", _help, help="commands and their use", usage="/help [COMMAND]")
    registry.add("plugins", _plugins, help="loaded plugins", usage="/plugins")
    registry.add("quit", _quit, help="leave (peers see you go)", usage="/quit")
