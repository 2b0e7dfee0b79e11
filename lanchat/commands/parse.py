"""Reading an input line: words as a shell splits them, and running a line as a command or
as text for the current target."""

from __future__ import annotations

import shlex

from lanchat.commands.registry import CommandError, Context, Output


def split_words(text: str) -> list[str]:
    """Split like a shell; raise CommandError on an unclosed quote."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"cannot read the arguments: {exc}") from None


def first_word(text: str) -> tuple[str, str]:
    """Split off the first (possibly quoted) word; return it and the rest as typed."""
    text = text.lstrip()
    if not text:
        return "", ""
    if text[0] in "\"'":
        end = text.find(text[0], 1)
        if end < 0:
            raise CommandError("cannot read the arguments: no closing quotation")
        return text[1:end], text[end + 1:].lstrip()
    word, _, rest = text.partition(" ")
    return word, rest.lstrip()


def execute(ctx: Context, line: str) -> Output | None:
    """Run one input line: a slash command, or text for the current target. Commands are
    plugin code: with a plugin manager they run on its plugin thread (the caller waits)."""
    if ctx.plugins is not None:
        result: Output | None = ctx.plugins.run(_execute, ctx, line)
        return result
    return _execute(ctx, line)


def _execute(ctx: Context, line: str) -> Output | None:
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    # Spaces before the slash are a slip of the thumb: the line is still a command.
    body = line.lstrip(" \t")
    if body.startswith("//"):
        return ctx.queue_text(ctx.target, body[1:])
    if not body.startswith("/"):
        return ctx.queue_text(ctx.target, line)
    name, _, argtext = body[1:].partition(" ")
    command = ctx.registry.get(name)
    if command is None:
        raise CommandError(f"unknown command /{name}; /help lists them")
    return command.func(ctx, argtext.strip())
