"""Assembling a node: the extensions a config asks for, its listeners, plugins bridged to
events, and a waiter for events on another thread.

Every face (the shell, the headless mode, doctor, `send --file`, the web UI) builds its
node here, so none of them imports another.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node, NodeError, local_addresses
from lanchat.plugins import PluginFailure, Plugins


def open_node(config: Config, plugins: Plugins | None = None) -> Node:
    """Build a node with the configured discovery, file transfer, rooms and foreign peer
    kinds (Bonjour chat, LocalSend), not started."""
    from lanchat import rooms, transfer
    from lanchat.discovery.interfaces import usable_interfaces

    def interface_addresses() -> list[str]:
        try:
            return [i.ip for i in usable_interfaces()] or local_addresses()
        except (OSError, ValueError):
            return local_addresses()

    node = Node(config, addresses=interface_addresses)
    if config.beacon or config.mdns:
        from lanchat import discovery

        discovery.attach(node)
    transfer.attach(node)
    rooms.attach(node)
    # The foreign kinds ride on discovery: XEP-0174 is mDNS, LocalSend's announcements are a
    # multicast beacon. With discovery off, so are they (and an idle node imports neither).
    if config.xmpp and config.mdns:
        from lanchat.interop import xmpp

        xmpp.attach(node)
    if config.localsend and config.beacon:
        from lanchat.interop import localsend

        localsend.attach(node)
    return node


def started_node(config: Config, *listeners: Callable[[Event], None]) -> Node | None:
    """Open and start a node with these listeners; on failure print one line, return None."""
    node = open_node(config)
    for listener in listeners:
        node.subscribe(listener)
    try:
        node.start()
    except NodeError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return None
    return node


def plugin_bridge(node: Node, plugins: Plugins) -> Callable[[Event], None]:
    """Turn node events into plugin hook calls: queued from the event thread, run on the
    plugin thread in order. A plugin disabled from now on becomes an `error` event."""

    def failed(failure: PluginFailure) -> None:
        node.emit("error", code="plugin_failed",
                  message=f"plugin {failure.name} disabled ({failure.where}): {failure.error}")

    plugins.on_failure(failed)

    def on_event(event: Event) -> None:
        f = event.fields
        if event.name == "message":
            plugins.post("lanchat_message_received", node=node, message=dict(f))
        elif event.name == "peer_joined":
            plugins.post("lanchat_peer_joined", node=node, peer=dict(f["peer"]))
        elif event.name == "peer_left":
            plugins.post("lanchat_peer_left", node=node, peer=dict(f["peer"]),
                         reason=f["reason"])
        elif event.name == "file_done" and f.get("direction") == "in":
            plugins.post("lanchat_file_received", node=node, transfer=dict(f))
        elif event.name == "room_joined":
            plugins.post("lanchat_room_joined", node=node, room=dict(f))

    return on_event


class EventWaiter:
    """Collects events so another thread can wait for one with a deadline."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, pred: Callable[[Event], bool], deadline: float,
             start: int = 0) -> Event | None:
        """Return the first event from index `start` matching `pred`, or None at the deadline."""
        seen = start
        with self.cond:
            while True:
                for event in self.events[seen:]:
                    if pred(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class JsonPrinter:
    """One JSON object per line; flushed whenever the event queue runs empty."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, event: Event) -> None:
        """Write one event."""
        self.out.write(event.to_json() + "\n")

    def flush(self) -> None:
        """Flush the stream."""
        try:
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass


def print_json_events(node: Node, out: TextIO) -> JsonPrinter:
    """Write every event of `node` to `out` as `run --json` does (flushed when idle)."""
    printer = JsonPrinter(out)
    node.subscribe(printer.event)
    node.on_idle(printer.flush)
    return printer
