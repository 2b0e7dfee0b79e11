"""Built-in commands about messages: sending (/msg, /all, /me), where plain lines go
(/chat), and the stored history (/history, /search)."""

from __future__ import annotations

import time
from typing import Any

from lanchat.commands.parse import first_word, split_words
from lanchat.commands.registry import CommandError, CommandRegistry, Context, Output
from lanchat.identity import short_id
from lanchat.text import safe_line, safe_text


def _msg(ctx: Context, args: str) -> Output | None:
    peer, text = first_word(args)
    if not peer or not text:
        raise CommandError("usage: /msg PEER TEXT")
    return ctx.queue_text(peer, text)


def _all(ctx: Context, args: str) -> Output | None:
    if not args:
        raise CommandError("usage: /all TEXT")
    return ctx.queue_text("all", args)


def _me(ctx: Context, args: str) -> Output | None:
    if not args:
        raise CommandError("usage: /me ACTION")
    return ctx.queue_text(ctx.target, f"/me {args}")


def _chat(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if len(words) != 1:
        raise CommandError("usage: /chat PEER|all")
    if words[0] == "all":
        ctx.target = "all"
        return Output("plain lines now go to everyone", {"target": "all"})
    if ctx.registry.target(words[0]) is not None:
        ctx.target = words[0]
        return Output(f"plain lines now go to {safe_line(words[0])}", {"target": words[0]})
    peer = ctx.resolve(words[0])
    ctx.target = peer["id"]
    return Output(f"plain lines now go to {ctx.display(peer)}",
                  {"target": peer["id"], "nick": peer["nick"]})


def _history(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    limit = 20
    if words and words[-1].isdigit() and (len(words) == 2 or len(words) == 1):
        limit = int(words.pop())
    if len(words) > 1:
        raise CommandError("usage: /history [PEER] [N]")
    try:
        rows = ctx.node.history(words[0] if words else None, limit)
    except LookupError as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    lines = [f"{time.strftime('%H:%M', time.localtime(r['ts']))} "
             f"{'->' if r['direction'] == 'out' else '<-'} {_other_side(r)}: "
             f"{safe_text(r['text'])}" for r in rows]
    return Output("\n".join(lines) or "no messages yet", rows)


def _other_side(row: dict[str, Any]) -> str:
    """Who a stored message was with: the recipient of an outgoing one, else its sender."""
    if row["direction"] == "in":
        return safe_line(row["nick"])
    if row.get("to") == "broadcast":
        return "everyone"
    who = str(row.get("with") or row["peer"])
    return safe_line(who if who != row["peer"] else short_id(who))


def _search(ctx: Context, args: str) -> Output | None:
    if not args.strip():
        raise CommandError("usage: /search TEXT")
    rows = ctx.node.search(args, 50)
    lines = [f"{time.strftime('%m-%d %H:%M', time.localtime(r['ts']))} "
             f"{'->' if r['direction'] == 'out' else '<-'} {safe_line(r['with'])}: "
             f"{safe_text(r['text'])}" for r in rows]
    return Output("\n".join(lines) or f"nothing matches {args!r}", rows)


def register(registry: CommandRegistry) -> None:
    """Add the messages commands."""
    registry.add("msg", _msg, help="send a direct message", usage="/msg PEER TEXT")
    registry.add("all", _all, help="send to everyone", usage="/all TEXT")
    registry.add("me", _me, help="send an action to the current target", usage="/me ACTION")
    registry.add("chat", _chat, help="where plain lines go", usage="/chat PEER|all")
    registry.add("history", _history, help="stored messages", usage="/history [PEER] [N]")
    registry.add("search", _search, help="full-text search of the history",
                 usage="/search TEXT")
