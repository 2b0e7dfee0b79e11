"""Commands only the shell has: /buffer, /clear, /bell. Registered unless a plugin has
taken the name; each reaches the shell through the small interface below."""

from __future__ import annotations

from typing import Protocol

from lanchat.commands import CommandError, CommandRegistry, Context, Output
from lanchat.shell.buffers import BufferView
from lanchat.shell.toolbar import buffer_label


class ShellControl(Protocol):
    """What these commands change in the shell."""

    bell: bool

    def buffer_views(self) -> tuple[BufferView, ...]:
        """The buffer list."""

    def switch(self, ref: str) -> None:
        """Go to a buffer by number, name or peer; raise CommandError if none."""

    def close_buffer(self, ref: str) -> str:
        """Close a buffer; return its name."""

    def clear_screen(self) -> None:
        """Clear the current buffer's screen and scrollback (the store keeps it)."""


def add_shell_commands(registry: CommandRegistry, shell: ShellControl) -> None:
    """Register /buffer, /clear and /bell as the plugin "shell"."""

    def buffer(ctx: Context, args: str) -> Output | None:
        words = args.split()
        if not words:
            views = shell.buffer_views()
            return Output("\n".join(f"{buffer_label(v):<24} {v.kind.value}" for v in views),
                          [{"number": v.number, "name": v.name, "kind": v.kind.value,
                            "unread": v.unread, "current": v.current} for v in views])
        if words[0] == "close":
            name = shell.close_buffer(" ".join(words[1:]))
            return Output(f"closed {name} (its history stays: /history)", {"closed": name})
        shell.switch(args.strip())
        return None

    def clear(ctx: Context, args: str) -> Output | None:
        if args.strip():
            raise CommandError("usage: /clear")
        shell.clear_screen()
        return None

    def bell(ctx: Context, args: str) -> Output:
        word = args.strip().lower()
        if word not in ("", "on", "off"):
            raise CommandError("usage: /bell [on|off]")
        shell.bell = (not shell.bell) if not word else word == "on"
        return Output(f"bell {'on' if shell.bell else 'off'} for direct messages and mentions",
                      {"bell": shell.bell})

    saved, registry.current_plugin = registry.current_plugin, "shell"
    try:
        for name, func, help_text, usage in (
                ("buffer", buffer, "list buffers, go to one, or close one",
                 "/buffer [N|NAME|close [N|NAME]]"),
                ("clear", clear, "clear this buffer's screen (the history stays)", "/clear"),
                ("bell", bell, "ring the terminal bell on a direct message or a mention",
                 "/bell [on|off]")):
            try:
                registry.add(name, func, help=help_text, usage=usage)
            except ValueError:
                pass
    finally:
        registry.current_plugin = saved
