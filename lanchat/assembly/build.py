"""Building a node: the extensions a config asks for, started with its listeners, and
plugins bridged to its events."""

from __future__ import annotations

import sys
from collections.abc import Callable

from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node, NodeError, local_addresses
from lanchat.plugins import PluginFailure, Plugins


def open_node(config: Config, plugins: Plugins | None = None) -> Node:
    """Build a node with the configured discovery, file transfer, rooms and foreign peer
    kinds (Bonjour chat, LocalSend), not started."""
    from lanchat import rooms, transfer

    def interface_addresses() -> list[str]:
        # asked only when neither --interface nor discovery named any: a node without
        # discovery does not import the package (its beacon modules) for nothing
        from lanchat.discovery.interfaces import usable_interfaces

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
