"""The headless contract: `lanchat run [--json]`, `send`, `peers`, `id`, `plugins`,
`doctor`.

Events are written by the node's event thread only, one line each, so output is never
interleaved; commands read from stdin run on the main thread. The node is built by
`lanchat.assembly`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TextIO

from lanchat.assembly import (
    EventWaiter,
    JsonPrinter,
    open_node,
    plugin_bridge,
    print_json_events,
    started_node,
)
from lanchat.commands import CommandError, Context, build_registry, execute, queued_id
from lanchat.config import Config
from lanchat.events import Event, json_line
from lanchat.identity import Identity, fingerprint, short_id
from lanchat.naming import AmbiguousName, PeerNames
from lanchat.node import Node, NodeError, check_text
from lanchat.plugins import Plugins
from lanchat.rooms.render import ROOM_EVENTS, describe_room
from lanchat.runtime import closing, freeze_started
from lanchat.text import safe_line, safe_text


def describe(event: Event, name: Callable[[dict[str, Any]], str] | None = None) -> str | None:
    """One human line (or a few) for an event; None for events people need not see.
    `name(peer)` shows a peer (default: its nick; `run` gives the screen's name, with the
    id suffix when the nick is shared and the trust mark)."""
    f = event.fields
    if name is None:
        def name(peer: dict[str, Any]) -> str:
            return str(peer.get("nick", ""))
    if event.name == "message":
        sender = safe_line(name(f["from"]))
        # Continuation lines are indented, so a peer cannot forge a line of its own.
        text = safe_text(f["text"]).replace("\n", "\n    | ")
        where = {"direct": "", "broadcast": " (all)"}.get(
            f["to"], f" {safe_line(str(f.get('room')))}")
        if text.startswith("/me "):
            return f"* {sender}{where} {text[4:]}"
        return f"<{sender}>{where} {text}"
    if event.name == "sent":  # ours, from any face, command or plugin of this node
        to = f["recipients"]
        where = {"direct": safe_line(name(to[0])) if to else "?",
                 "broadcast": f"all ({len(to)})"}.get(
            f["to"], f"{safe_line(str(f.get('room')))} ({len(to)})")
        return f"-> {where}: " + safe_text(f["text"]).replace("\n", "\n    | ")
    if event.name in ("peer_joined", "peer_left"):
        p = f["peer"]
        verb = "is here" if event.name == "peer_joined" else f"left ({f['reason']})"
        return f"-- {safe_line(name(p))} [{p['number']}] {verb}"
    if event.name in ROOM_EVENTS:
        return describe_room(event.name, f)
    if event.name == "output":
        return safe_text(str(f["text"]))
    if event.name == "error":
        return f"!! {safe_text(str(f['message']))}"
    if event.name == "web_ready":
        return f"lanchat web: {f['url']}"
    if event.name == "ready":
        return (f"-- you are {safe_line(f['nick'])} ({short_id(f['id'])}) on port {f['port']};"
                " /help lists commands")
    if event.name == "not_delivered":
        return f"!! message {f['id'][:8]} not delivered: {f['reason']}"
    if event.name.startswith("file_") and event.name != "file_progress":
        return f"-- {event.name}: " + ", ".join(f"{k}={safe_line(str(v))}"
                                                  for k, v in f.items())
    return None


class TextPrinter(JsonPrinter):
    """Human lines for a plain terminal or a pipe; `name(peer)` as in `describe`."""

    def __init__(self, out: TextIO,
                 name: Callable[[dict[str, Any]], str] | None = None) -> None:
        super().__init__(out)
        self.name = name

    def event(self, event: Event) -> None:
        """Write the event's line, if it has one (a message queued by a command shows
        once, as its `sent` event, not also as the command's answer)."""
        if event.name == "output" and queued_id(event.fields.get("data")):
            return
        line = describe(event, self.name)
        if line is not None:
            self.out.write(line + "\n")


def run(config: Config, *, json_mode: bool, stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        prepare: Callable[[Node, Plugins], None] | None = None,
        stay_after_eof: bool = False) -> int:
    """A node without the shell: commands on stdin, events on stdout.

    `prepare(node, plugins)` adds extensions before the start (`lanchat web`); with
    `stay_after_eof` the end of stdin does not stop the node (only /quit or a signal)."""
    plugins = Plugins(config.home, disabled=config.disabled_plugins)
    registry = build_registry(plugins)
    node = open_node(config, plugins)
    if prepare is not None:
        prepare(node, plugins)
    if json_mode:
        printer: JsonPrinter = JsonPrinter(stdout)
    else:
        names = PeerNames(node.peers)
        node.subscribe(names.seen)
        printer = TextPrinter(stdout, names.display)
    node.subscribe(printer.event)
    node.on_idle(printer.flush)
    node.subscribe(plugin_bridge(node, plugins))
    for failure in plugins.failures:
        node.emit("error", code="plugin_failed",
                  message=f"plugin {failure.name} disabled ({failure.where}): {failure.error}")
    try:
        node.start()
    except NodeError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 1
    plugins.call("lanchat_startup", node=node)
    freeze_started()
    ctx = Context(node, registry, plugins)
    try:
        for line in stdin:
            command = line.strip()
            try:
                out = execute(ctx, line)
            except CommandError as exc:
                node.emit("error", code="command", message=str(exc), command=command)
                continue
            except Exception as exc:  # noqa: BLE001 - a command bug never ends the node
                node.emit("error", code="internal", message=f"{type(exc).__name__}: {exc}",
                          command=command)
                continue
            if out is not None:
                node.emit("output", command=command, text=out.text, data=out.data)
            if ctx.quit:
                break
        if stay_after_eof and not ctx.quit:
            threading.Event().wait()  # until a signal (KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        with closing():
            plugins.call("lanchat_shutdown", node=node)
            node.close()
            plugins.close()
            printer.flush()
    return 0


def send(config: Config, *, to: str | None, text: str, wait_s: float,
         json_mode: bool = False) -> int:
    """Start, send one message (to a peer or everyone), wait for the ack(s), exit.

    With `json_mode` every event of the short-lived node goes to stdout as `run --json`
    writes it (`delivered` per peer among them)."""
    try:
        check_text(text)
    except ValueError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 2
    waiter = EventWaiter()
    config = replace(config, ephemeral=True)  # a one-shot: nobody keeps it as a peer
    node = open_node(config)
    node.subscribe(waiter)
    if json_mode:
        printer = print_json_events(node, sys.stdout)
    try:
        node.start()
    except NodeError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + wait_s
    try:
        if to is not None:
            peer = _wait_for_peer(node, waiter, to, deadline)
            if peer is None:
                print(f"lanchat: no peer {to!r} found in {wait_s:g} s; check `lanchat peers`"
                      " or name it with --peer HOST[:PORT]", file=sys.stderr)
                return 1
            msg_id = node.send(peer["id"], text)
            targets = [peer["id"]]
        else:
            waiter.wait(lambda e: False, min(deadline, time.monotonic() + 1.5))
            online = {p["id"] for p in node.peers() if p["online"]}
            msg_id, targets = node.broadcast(text)
            if not online:
                print("lanchat: nobody is online to send to; check `lanchat peers`"
                      + (" (queued for the known peers)" if targets else ""), file=sys.stderr)
                return 1
            offline = [p["nick"] for p in node.peers() if p["id"] in set(targets) - online]
            if offline:
                print(f"lanchat: queued for {len(offline)} offline peer(s), sent when they "
                      f"are back: {', '.join(safe_line(n) for n in offline)}", file=sys.stderr)
            targets = [t for t in targets if t in online]
        pending = set(targets)
        while pending:
            event = waiter.wait(lambda e: e.name == "delivered" and e["id"] == msg_id
                                and e["to"] in pending, deadline)
            if event is None:
                break
            pending.discard(event["to"])
        if pending:
            names = ", ".join(sorted(safe_line(node.resolve(p)["nick"]) for p in pending))
            print(f"lanchat: not acked in time by {names}; the message stays queued in "
                  f"{config.home} and is resent the next time lanchat runs there",
                  file=sys.stderr)
            return 1
        return 0
    except AmbiguousName as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 2
    finally:
        with closing():
            node.close()
        if json_mode:
            printer.flush()


def _wait_for_peer(node: Node, waiter: EventWaiter, ref: str,
                   deadline: float) -> dict[str, Any] | None:
    """Wait until `ref` names an online peer; at the deadline return it offline, or None."""
    while True:
        marker = len(waiter.events)
        try:
            peer: dict[str, Any] | None = node.resolve(ref)
        except AmbiguousName:
            raise  # waiting does not make a shared name mean one key
        except LookupError:
            peer = None
        if peer is not None and peer["online"]:
            return peer
        if waiter.wait(lambda e: e.name in ("peer_joined", "peer_updated"), deadline,
                       marker) is None:
            return peer


def peers(config: Config, *, wait_s: float, json_mode: bool) -> int:
    """Discover for `wait_s` seconds, print the peers, exit."""
    node = started_node(replace(config, ephemeral=True))
    if node is None:
        return 1
    try:
        time.sleep(max(0.0, wait_s))
        found = [p for p in node.peers() if p["online"]]
    finally:
        with closing():
            node.close()
    if json_mode:
        print(json_line({"peers": found}))
    elif not found:
        print("no peers found; `lanchat doctor` tells why", file=sys.stderr)
    else:
        for p in found:
            print(f"{p['number']:>3}  {safe_line(p['nick']):<16} "
                  f"{', '.join(p['addresses']):<24} {short_id(p['id'])}  via "
                  f"{','.join(p['via'])}" + ("" if p.get("kind", "lanchat") == "lanchat"
                                              else f"  [{p['kind']}]"))
    return 0


def show_id(config: Config, *, json_mode: bool = False) -> int:
    """Print this home's nick, id and fingerprint (creating the identity if needed)."""
    identity = Identity.load_or_create(config.home)
    if json_mode:
        print(json_line({"nick": config.nick, "id": identity.node_id,
                         "short": short_id(identity.node_id),
                         "fingerprint": fingerprint(identity.node_id),
                         "home": str(config.home)}))
        return 0
    print(f"nick:        {safe_line(config.nick)}")
    print(f"id:          {identity.node_id}")
    print(f"short:       {short_id(identity.node_id)}")
    print(f"fingerprint: {fingerprint(identity.node_id)}")
    return 0


def list_plugins(config: Config, *, json_mode: bool) -> int:
    """List plugins, their hooks and the commands they add."""
    plugins = Plugins(config.home, disabled=config.disabled_plugins)
    registry = build_registry(plugins)
    listing = plugins.listing()
    by_plugin: dict[str, list[str]] = {}
    for command in registry.all():
        by_plugin.setdefault(command.plugin, []).append(command.name)
    for item in listing:
        item["commands"] = by_plugin.get(item["name"], [])
    if json_mode:
        print(json_line({"plugins": listing}))
        return 0
    for item in listing:
        state = "" if item["enabled"] else f"  DISABLED: {item.get('error', '')}"
        print(f"{item['name']}  ({item['source']}){state}")
        if item["hooks"]:
            print(f"  hooks:    {', '.join(item['hooks'])}")
        if item["commands"]:
            print(f"  commands: {' '.join('/' + c for c in item['commands'])}")
    return 0


def doctor(config: Config, *, wait_s: float, json_mode: bool) -> int:
    """`lanchat doctor`: start a node, listen for `wait_s` seconds, print the report."""
    from lanchat.doctor import collect, format_text

    node = started_node(replace(config, ephemeral=True))  # listed by nobody
    if node is None:
        return 1
    try:
        time.sleep(max(0.0, wait_s))
        report = collect(node)
    finally:
        with closing():
            node.close()
    if json_mode:
        print(json_line(report))
    else:
        print(format_text(report))
    return 0
