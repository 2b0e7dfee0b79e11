"""Built-in commands about who is who: the peer list, a peer's keys and kind, trust, and
your own nick."""

from __future__ import annotations

import time
from typing import Any

from lanchat.commands.parse import split_words
from lanchat.commands.registry import CommandError, CommandRegistry, Context, Output
from lanchat.identity import fingerprint, short_id
from lanchat.naming import NameIndex
from lanchat.text import safe_line


def _list(ctx: Context, args: str) -> Output | None:
    peers = ctx.node.peers()
    unread = ctx.state.get("unread", {})
    if not peers:
        return Output("no peers yet", [])
    lines = []
    names = NameIndex(peers)
    for p in peers:
        status = "online" if p["online"] else "offline"
        host = safe_line(p["host"] or (p["addresses"][0] if p["addresses"] else "?"))
        n = unread.get(p["id"], 0)
        p["display"] = names.display(p)
        lines.append(f"{p['number']:>3}  {p['display']:<16} {host:<20} {status:<8}"
                     f" {short_id(p['id'])} {p['trust']}" + _kind_mark(p)
                     + (f"  ({n} unread)" if n else ""))
        p["unread"] = n
    return Output("\n".join(lines), peers)


def _kind_mark(peer: dict[str, Any]) -> str:
    """How /list marks a peer that is not a lanchat node."""
    kind = peer.get("kind", "lanchat")
    if kind == "lanchat":
        return ""
    return f"  [{kind}" + ("" if peer.get("encrypted", True) else ", unencrypted") + "]"


def _kind_line(peer: dict[str, Any]) -> str:
    """How /whois describes the peer's kind and what protects the conversation."""
    kind = peer.get("kind", "lanchat")
    if kind == "xmpp":
        return ("Bonjour chat (XEP-0174): unencrypted and unverified; anyone on the network "
                "can read it or claim this name")
    if kind == "localsend":
        return "LocalSend: files only (no chat), HTTPS, known by its certificate"
    return "lanchat: encrypted, key pinned"


def _whois(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if len(words) != 1:
        raise CommandError("usage: /whois PEER")
    p = ctx.resolve(words[0])
    seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["first_seen"]))
    text = (f"{ctx.display(p)} ({'online' if p['online'] else 'offline'})\n"
            f"  kind:        {_kind_line(p)}\n"
            f"  fingerprint: {safe_line(p.get('fingerprint') or fingerprint(p['id']))}\n"
            f"  addresses:   {', '.join(p['addresses']) or '-'} port {p['port']}\n"
            f"  seen via:    {', '.join(p['via']) or '-'}\n"
            f"  first seen:  {seen}\n  trust:       {p['trust']}\n"
            f"  queued:      {p['queued']}")
    return Output(text, p)


def _nick(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if len(words) != 1:
        raise CommandError("usage: /nick NAME")
    try:
        nick = ctx.node.set_nick(words[0])
    except ValueError as exc:
        raise CommandError(f"{exc}; your nick stays {ctx.node.nick}") from None
    return Output(f"you are now {safe_line(nick)}", {"nick": nick})


def _one_peer(ctx: Context, args: str, usage: str) -> tuple[dict[str, Any], list[str]]:
    words = split_words(args)
    if not words:
        raise CommandError(f"usage: {usage}")
    return ctx.resolve(words[0]), words[1:]


def _verify(ctx: Context, args: str) -> Output | None:
    peer, rest = _one_peer(ctx, args, "/verify PEER [yes]")
    nick = ctx.display(peer)
    _, code = ctx.node.safety_code(peer["id"])
    if rest and rest[0].lower() in ("yes", "confirm", "ok"):
        ctx.node.set_trust(peer["id"], "verified")
        return Output(f"{nick} is now verified", {"peer": peer["id"], "trust": "verified",
                                                   "code": code})
    text = (f"safety code with {nick}:\n    {code}\n"
            f"Read it to {nick} in person or by phone; {nick} runs /verify on you and sees "
            f"the same digits. If they match, type: /verify {peer['number']} yes")
    return Output(text, {"peer": peer["id"], "code": code, "trust": peer["trust"]})


def _trust(ctx: Context, args: str) -> Output | None:
    peer, rest = _one_peer(ctx, args, "/trust PEER [off]")
    level = "tofu" if rest and rest[0].lower() in ("off", "no") else "trusted"
    ctx.node.set_trust(peer["id"], level)
    verb = "trusted" if level == "trusted" else "no longer trusted"
    return Output(f"{safe_line(peer['nick'])} is {verb}", {"peer": peer["id"], "trust": level})


def _forget(ctx: Context, args: str) -> Output | None:
    peer, _ = _one_peer(ctx, args, "/forget PEER")
    ctx.node.forget(peer["id"])
    if ctx.target == peer["id"]:
        ctx.target = "all"
    return Output(f"forgot {safe_line(peer['nick'])}: key pin, queued messages and list entry "
                  "(history stays)", {"peer": peer["id"]})


def _ignore(ctx: Context, args: str) -> Output | None:
    if not args.strip():
        peers = ctx.node.ignored()
        names = ", ".join(safe_line(p["nick"]) for p in peers)
        return Output(f"ignored: {names}" if peers else "nobody is ignored",
                      [{"id": p["id"], "nick": p["nick"]} for p in peers])
    peer, _ = _one_peer(ctx, args, "/ignore [PEER]")
    ctx.node.ignore(peer["id"], True)
    return Output(f"ignoring {safe_line(peer['nick'])}: their messages are kept in the history"
                  " but not shown; /unignore shows them again",
                  {"peer": peer["id"], "ignored": True})


def _unignore(ctx: Context, args: str) -> Output | None:
    peer, _ = _one_peer(ctx, args, "/unignore PEER")
    _, changed = ctx.node.ignore(peer["id"], False)
    nick = safe_line(peer["nick"])
    return Output(f"{nick} is shown again" if changed else f"{nick} was not ignored",
                  {"peer": peer["id"], "ignored": False})


def register(registry: CommandRegistry) -> None:
    """Add the peers commands."""
    registry.add("list", _list, help="numbered peers with status", usage="/list")
    registry.add("whois", _whois, help="a peer's fingerprint, addresses and history",
                 usage="/whois PEER")
    registry.add("nick", _nick, help="change your nick", usage="/nick NAME")
    registry.add("verify", _verify, help="compare a safety code aloud; mark the peer verified",
                 usage="/verify PEER [yes]")
    registry.add("trust", _trust, help="trust a peer (e.g. for file auto-accept)",
                 usage="/trust PEER [off]")
    registry.add("forget", _forget, help="drop a peer's key pin and queued messages",
                 usage="/forget PEER")
    registry.add("ignore", _ignore, help="hide a peer's messages (kept in the history); "
                 "no PEER: list", usage="/ignore [PEER]")
    registry.add("unignore", _unignore, help="show a peer's messages again",
                 usage="/unignore PEER")
