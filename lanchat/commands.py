"""Slash commands: the registry, the line parser, and the built-in commands.

The built-ins are a default plugin: they register through `lanchat_register_commands`,
the same hook any plugin uses.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lanchat.hookspecs import hookimpl
from lanchat.identity import fingerprint, short_id
from lanchat.naming import NameIndex, display_name
from lanchat.text import safe_line, safe_text


class CommandError(Exception):
    """A command could not run; the message says what to type instead."""


@dataclass(frozen=True)
class Output:
    """What a command answers: text for people, data for scripts."""

    text: str
    data: Any = None


@dataclass
class Context:
    """What a command can reach: the node, the registry, UI state."""

    node: Any
    registry: CommandRegistry
    plugins: Any = None
    target: str = "all"
    quit: bool = False
    state: dict[str, Any] = field(default_factory=dict)

    def queue_text(self, to: str, text: str) -> Output:
        """Send `text` to a peer reference, 'all', or a target a plugin registered (e.g. a
        room), after the outgoing hook."""
        if self.plugins is not None:
            filtered = self.plugins.filter_outgoing(self.node, to, text)
            if filtered is None:
                return Output("message vetoed by a plugin", {"vetoed": True})
            text = filtered
        sender = self.registry.target(to)
        if sender is not None:
            return sender(self, to, text)
        if to != "all":
            asked = self._confirm_unencrypted(to)
            if asked is not None:
                return asked
        try:
            if to == "all":
                msg_id, peers = self.node.broadcast(text)
                if not peers:
                    raise CommandError("nobody is known yet; wait for peers or use --peer")
                return Output(f"-> all ({len(peers)}): {text}",
                              {"id": msg_id, "to": "all", "peers": peers, "text": text})
            peer = self.node.resolve(to)
            msg_id = self.node.send(peer["id"], text)
        except (LookupError, ValueError) as exc:
            raise CommandError(str(exc).strip("'\"")) from None
        return Output(f"-> {self.display(peer)}: {text}",
                      {"id": msg_id, "to": peer["id"], "text": text})

    def resolve(self, ref: str) -> dict[str, Any]:
        """The one peer `ref` names (number, NICK#ID, id, unambiguous nick), or a
        CommandError that says why not (no such peer; ambiguous, with the candidates)."""
        try:
            peer: dict[str, Any] = self.node.resolve(ref)
        except LookupError as exc:
            raise CommandError(str(exc).strip("'\"")) from None
        return peer

    def display(self, peer: dict[str, Any]) -> str:
        """A peer's name as the screen shows it (suffix when shared, trust mark)."""
        return display_name(peer, self.node.peers())


    def _confirm_unencrypted(self, to: str) -> Output | None:
        """The first message to each Bonjour chat peer is held once: it would go out in
        the clear, to whoever uses that name. None when it may go."""
        peer = self.resolve(to)
        if peer.get("encrypted", True):
            return None
        confirmed: set[str] = self.state.setdefault("unencrypted_ok", set())
        if peer["id"] in confirmed:
            return None
        confirmed.add(peer["id"])
        return Output(f"{safe_line(peer['nick'])} is a Bonjour chat peer: messages to it are "
                      "not encrypted, and anyone on the network can use that name. Not sent; "
                      "send it again to go ahead.",
                      {"to": peer["id"], "sent": False, "confirm": "unencrypted"})


Handler = Callable[[Context, str], Output | None]
TargetSender = Callable[[Context, str, str], Output]


@dataclass(frozen=True)
class Command:
    """One slash command."""

    name: str
    func: Handler
    help: str
    usage: str
    plugin: str


class CommandRegistry:
    """Commands by name; later registrations do not replace earlier ones silently."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._targets: dict[str, TargetSender] = {}
        self.current_plugin = "builtin"

    def add_target(self, prefix: str, sender: TargetSender) -> None:
        """Route text for targets starting with `prefix` (e.g. '#' for rooms) to
        `sender(ctx, target, text)`, for /msg, /chat and plain lines."""
        if not prefix or prefix in self._targets:
            raise ValueError(f"target prefix {prefix!r} is taken or empty")
        self._targets[prefix] = sender

    def target(self, to: str) -> TargetSender | None:
        """The sender registered for target `to`, if any."""
        for prefix, sender in self._targets.items():
            if to.startswith(prefix):
                return sender
        return None

    def add(self, name: str, func: Handler, *, help: str = "", usage: str = "") -> None:
        """Register `/name`; `func(ctx, argtext)` returns an Output or None."""
        name = name.lstrip("/").lower()
        if not name.isidentifier():
            raise ValueError(f"bad command name {name!r}")
        if name in self._commands:
            raise ValueError(f"/{name} is already registered by {self._commands[name].plugin}")
        self._commands[name] = Command(name, func, help, usage or f"/{name}",
                                       self.current_plugin)

    def remove_plugin(self, plugin: str) -> None:
        """Drop every command a plugin registered."""
        self._commands = {k: c for k, c in self._commands.items() if c.plugin != plugin}

    def get(self, name: str) -> Command | None:
        """The command called `name`, if any."""
        return self._commands.get(name.lstrip("/").lower())

    def all(self) -> list[Command]:
        """Every command, by name."""
        return [self._commands[k] for k in sorted(self._commands)]

    def names(self) -> list[str]:
        """Every command name."""
        return sorted(self._commands)


def build_registry(plugins: Any) -> CommandRegistry:
    """Ask every plugin for its commands; a plugin that fails is disabled, commands and all."""
    registry = CommandRegistry()
    for impl in reversed(plugins.pm.hook.lanchat_register_commands.get_hookimpls()):
        name = plugins.pm.get_name(impl.plugin) or "?"
        registry.current_plugin = name
        try:
            impl.function(registry)
        except Exception as exc:  # noqa: BLE001
            registry.remove_plugin(name)
            plugins._fail(name, "lanchat_register_commands", exc)
            plugins.pm.unregister(impl.plugin)
    registry.current_plugin = "builtin"
    return registry


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


# -- built-in commands ---------------------------------------------------------------


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


def _search(ctx: Context, args: str) -> Output | None:
    if not args.strip():
        raise CommandError("usage: /search TEXT")
    rows = ctx.node.search(args, 50)
    lines = [f"{time.strftime('%m-%d %H:%M', time.localtime(r['ts']))} "
             f"{'->' if r['direction'] == 'out' else '<-'} {safe_line(r['with'])}: "
             f"{safe_text(r['text'])}" for r in rows]
    return Output("\n".join(lines) or f"nothing matches {args!r}", rows)


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


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """The built-in commands."""
    registry.add("msg", _msg, help="send a direct message", usage="/msg PEER TEXT")
    registry.add("all", _all, help="send to everyone", usage="/all TEXT")
    registry.add("me", _me, help="send an action to the current target", usage="/me ACTION")
    registry.add("chat", _chat, help="where plain lines go", usage="/chat PEER|all")
    registry.add("list", _list, help="numbered peers with status", usage="/list")
    registry.add("whois", _whois, help="a peer's fingerprint, addresses and history",
                 usage="/whois PEER")
    registry.add("nick", _nick, help="change your nick", usage="/nick NAME")
    registry.add("history", _history, help="stored messages", usage="/history [PEER] [N]")
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
    registry.add("search", _search, help="full-text search of the history",
                 usage="/search TEXT")
    registry.add("help", _help, help="commands and their use", usage="/help [COMMAND]")
    registry.add("plugins", _plugins, help="loaded plugins", usage="/plugins")
    registry.add("doctor", _doctor, help="why peers are or are not seen", usage="/doctor")
    registry.add("quit", _quit, help="leave (peers see you go)", usage="/quit")
