"""Assembling a node: every face (the shell, the headless mode, `lanchat doctor`, `send
--file`, the web window) builds its node here, so none of them imports another. `build`
makes and starts the node with its extensions and bridges plugins to its events; `listen`
holds the listeners the faces share."""

from lanchat.assembly.build import open_node, plugin_bridge, started_node
from lanchat.assembly.listen import EventWaiter, JsonPrinter, print_json_events

__all__ = ["EventWaiter", "JsonPrinter", "open_node", "plugin_bridge", "print_json_events",
           "started_node"]
