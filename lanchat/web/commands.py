"""`/web`: open the web window for the running node (a default plugin)."""

from __future__ import annotations

from lanchat.commands import CommandError, CommandRegistry, Context, Output, split_words
from lanchat.hookspecs import hookimpl
from lanchat.web import INSTALL_HINT, available, open_browser, start_on


def _web(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if words not in ([], ["--no-browser"]):
        raise CommandError("usage: /web [--no-browser]")
    if not available():
        raise CommandError(INSTALL_HINT)
    from lanchat.errors import NodeError

    try:
        server = start_on(ctx.node, plugins=ctx.plugins)
    except NodeError as exc:
        raise CommandError(str(exc)) from None
    opened = False
    if not words:
        opened = open_browser(server.url)
    note = "" if opened or words else " (no browser found: open it yourself)"
    return Output(f"lanchat web: {server.url}{note}", {"url": server.url, "opened": opened})


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """The web window command."""
    registry.add("web", _web, help="open this node's chat in a browser (127.0.0.1 only)",
                 usage="/web [--no-browser]")
