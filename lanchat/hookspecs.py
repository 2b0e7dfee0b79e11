"""The plugin hooks (pluggy). Every hook name starts with `lanchat_`."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lanchat")
hookimpl = pluggy.HookimplMarker("lanchat")


@hookspec
def lanchat_register_commands(registry: Any) -> None:
    """At start: add slash commands with `registry.add(name, func, help=..., usage=...)`."""


@hookspec
def lanchat_startup(node: Any) -> None:
    """The node is ready (its `ready` event was emitted)."""


@hookspec
def lanchat_shutdown(node: Any) -> None:
    """The node is closing; peers are still connected."""


@hookspec
def lanchat_peer_joined(node: Any, peer: dict[str, Any]) -> None:
    """A peer came online; `peer` is the contract's peer object (a copy)."""


@hookspec
def lanchat_peer_left(node: Any, peer: dict[str, Any], reason: str) -> None:
    """A peer went offline; reason is 'bye', 'timeout' or 'error'."""


@hookspec
def lanchat_message_received(node: Any, message: dict[str, Any]) -> None:
    """A new chat message was stored (never called twice for one id); `message["room"]` is
    the room ("#name") or None for a direct or broadcast message."""


@hookspec
def lanchat_message_outgoing(node: Any, message: dict[str, Any]) -> str | bool | None:
    """Before a message is queued: return a new text to change it, False to veto it;
    `message["to"]` is a peer, "all" or a room ("#name")."""


@hookspec
def lanchat_room_joined(node: Any, room: dict[str, Any]) -> None:
    """This node is in a room (created, joined or invited); `room` is the `room_joined`
    event's fields: room, kind, creator, topic, members, reason."""


@hookspec
def lanchat_file_received(node: Any, transfer: dict[str, Any]) -> None:
    """A file arrived and its hash was verified."""
