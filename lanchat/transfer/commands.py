"""Slash commands for files: a plugin through `lanchat_register_commands`, like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lanchat.commands import CommandError, CommandRegistry, Context, Output, first_word, split_words
from lanchat.hookspecs import hookimpl
from lanchat.text import safe_line
from lanchat.transfer import TransferError, TransferManager, manager_of
from lanchat.transfer.progress import human_size


def _manager(ctx: Context) -> TransferManager:
    manager = manager_of(ctx.node)
    if manager is None:
        raise CommandError("file transfer is not enabled in this node")
    return manager


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _file(ctx: Context, args: str) -> Output | None:
    peer, rest = first_word(args)
    path = _unquote(rest)
    if not peer or not path:
        raise CommandError("usage: /file PEER PATH")
    try:
        t = _manager(ctx).offer(peer, Path(path))
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    kind = f"folder, {len(t.items)} files, " if t.folder else ""
    return Output(f"offered {safe_line(t.name)} ({kind}{human_size(t.size)}) to "
                  f"{safe_line(t.peer_nick)} as {t.id}",
                  {"transfer": t.id, "to": t.peer, "name": t.name, "size": t.size})


def _accept(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if len(words) > 2:
        raise CommandError("usage: /accept [ID] [DIR]")
    ref = words[0] if words else None
    dest = Path(words[1]) if len(words) == 2 else None
    try:
        t = _manager(ctx).accept(ref, dest)
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    return Output(f"accepted {safe_line(t.name)} ({human_size(t.size)}) from "
                  f"{safe_line(t.peer_nick)} into {safe_line(t.dest_dir)}",
                  {"transfer": t.id, "dir": t.dest_dir})


def _decline(ctx: Context, args: str) -> Output | None:
    ref, reason = first_word(args)
    try:
        t = _manager(ctx).decline(ref or None, reason)
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    return Output(f"declined {safe_line(t.name)} from {safe_line(t.peer_nick)}",
                  {"transfer": t.id})


def _cancel(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if len(words) != 1:
        raise CommandError("usage: /cancel ID")
    try:
        t = _manager(ctx).cancel(words[0])
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    return Output(f"cancelled {safe_line(t.name)}", {"transfer": t.id})


def _transfers(ctx: Context, args: str) -> Output | None:
    rows = _manager(ctx).transfers()
    if not rows:
        return Output("no transfers", [])
    lines = []
    for r in rows:
        arrow = "<-" if r["direction"] == "in" else "->"
        state = r["state"] + (" (moving)" if r["moving"] else "")
        lines.append(f"{r['number']:>3} {r['transfer']} {arrow} {safe_line(r['nick']):<12} "
                     f"{safe_line(r['name'])[:40]:<40} {human_size(r['size']):>10}  {state}"
                     + (f": {safe_line(r['reason'])}" if r["reason"] else ""))
    return Output("\n".join(lines), rows)


def _autoaccept(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    manager = _manager(ctx)
    if not words:
        ids = manager.autoaccept_peers()
        return Output("auto-accept: " + (", ".join(sorted(ids)) or "nobody"), sorted(ids))
    on = True
    if words[0] in ("off", "-"):
        on, words = False, words[1:]
    elif words[0] == "on":
        words = words[1:]
    if len(words) != 1:
        raise CommandError("usage: /autoaccept [on|off] PEER")
    try:
        peer: dict[str, Any] = manager.set_autoaccept(words[0], on)
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    verb = "now accepted without asking" if on else "asked about again"
    return Output(f"offers from {safe_line(peer['nick'])} are {verb}",
                  {"peer": peer["id"], "autoaccept": on})


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """The file transfer commands."""
    registry.add("file", _file, help="offer a file or folder to a peer", usage="/file PEER PATH")
    registry.add("accept", _accept, help="accept an offer (default: the latest)",
                 usage="/accept [ID] [DIR]")
    registry.add("decline", _decline, help="decline an offer", usage="/decline ID [REASON]")
    registry.add("transfers", _transfers, help="offers and transfers with their state",
                 usage="/transfers")
    registry.add("cancel", _cancel, help="stop a transfer", usage="/cancel ID")
    registry.add("autoaccept", _autoaccept, help="accept a peer's files without asking",
                 usage="/autoaccept [on|off] PEER")
