"""What a slash command is and what it reaches: the registry, the context a command runs
in, and what it answers.

Context and registry name each other (a command gets the context; the context holds the
registry), so they live in one module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lanchat.naming import display_name
from lanchat.text import safe_line


class CommandError(Exception):
    """A command could not run; the message says what to type instead."""


@dataclass(frozen=True)
class Output:
    """What a command answers: text for people, data for scripts."""

    text: str
    data: Any = None

    @property
    def queued(self) -> str:
        """The id of the message this command queued, or "": see `queued_id`."""
        return queued_id(self.data)


def queued_id(data: Any) -> str:
    """The id of the message a command queued, from its answer's `data` (an `output`
    event's too), or "". Faces draw that message from the node's `sent` event, not from
    this answer."""
    if isinstance(data, dict) and data.get("id") and "to" in data:
        return str(data["id"])
    return ""


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
            asked = self.confirm_unencrypted(to)
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


    def confirm_unencrypted(self, to: str) -> Output | None:
        """The first message to each Bonjour chat peer is held once: it would go out in
        the clear, to whoever uses that name. None when it may go (every face that sends
        asks here: the shell and `run` through `queue_text`, the web page directly)."""
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
