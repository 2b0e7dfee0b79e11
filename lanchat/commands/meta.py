"""Built-in commands about lanchat itself: /help, /plugins, /doctor, /quit."""

from __future__ import annotations

import threading

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


def _doctor(ctx: Context, args: str) -> Output | None:
    """Checks ports and asks the node for figures, which takes a moment: it runs on its own
    thread and answers with an `output` event, so neither the prompt nor other plugins
    wait for it."""
    from lanchat.doctor import collect, format_text

    node = ctx.node

    def run() -> None:
        try:
            report = collect(node)
        except Exception as exc:  # noqa: BLE001 - a report that fails is an error event
            node.emit("error", code="internal", message=f"/doctor failed: {exc}",
                      command="/doctor")
            return
        node.emit("output", command="/doctor", text=format_text(report), data=report)

    threading.Thread(target=run, name="lanchat-doctor", daemon=True).start()
    return None


def _quit(ctx: Context, args: str) -> Output | None:
    ctx.quit = True
    return Output("bye", {"quit": True})


def register(registry: CommandRegistry) -> None:
    """Add /help, /plugins, /doctor and /quit."""
    registry.add("help", _help, help="commands and their use", usage="/help [COMMAND]")
    registry.add("plugins", _plugins, help="loaded plugins", usage="/plugins")
    registry.add("doctor", _doctor, help="why peers are or are not seen", usage="/doctor")
    registry.add("quit", _quit, help="leave (peers see you go)", usage="/quit")
