"""lanchat-away: `/away [TEXT]` and `/back`; while away, answer each direct message's sender
once per away period with an auto-reply that other away bots never answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lanchat.commands import CommandError, Output
from lanchat.hookspecs import hookimpl

__all__ = ["PREFIX", "AwayPlugin", "plugin"]

PREFIX = "[away] "
DEFAULT_TEXT = "away from the keyboard"
MAX_AWAY_CHARS = 500


@dataclass
class AwayState:
    """One node's away period: since when, why, who was answered, who wrote."""

    text: str
    since: float
    replied: set[str] = field(default_factory=set)
    missed: dict[str, dict[str, Any]] = field(default_factory=dict)


def is_auto_reply(text: str) -> bool:
    """True for a message sent by an away bot (ours or another's)."""
    return text.startswith(PREFIX.rstrip())


class AwayPlugin:
    """The away plugin; state is kept per node, so one instance may serve several nodes."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._away: dict[str, AwayState] = {}

    def state(self, node: Any) -> AwayState | None:
        """The node's current away period, or None while it is back."""
        with self._lock:
            return self._away.get(node.info()["id"])

    def _away_cmd(self, ctx: Any, argtext: str) -> Output:
        text = " ".join(argtext.split()) or DEFAULT_TEXT
        if len(text) > MAX_AWAY_CHARS:
            raise CommandError(f"the away text is longer than {MAX_AWAY_CHARS} characters")
        key = ctx.node.info()["id"]
        with self._lock:
            current = self._away.get(key)
            if current is None:
                current = self._away[key] = AwayState(text, self.clock())
                verb = "you are away"
            else:
                current.text = text
                verb = "away text changed"
        return Output(f"{verb}: {text} (direct messages get one auto-reply per person;"
                      " /back ends it)", {"away": True, "text": text, "since": current.since})

    def _back_cmd(self, ctx: Any, argtext: str) -> Output:
        if argtext.strip():
            raise CommandError("usage: /back")
        with self._lock:
            state = self._away.pop(ctx.node.info()["id"], None)
        if state is None:
            raise CommandError("you are not away; /away [TEXT] sets it")
        missed = sorted(state.missed.values(), key=lambda m: m["first"])
        minutes = max(0, int((self.clock() - state.since) // 60))
        lines = [f"welcome back; away {minutes} min"]
        for m in missed:
            lines.append(f"  {m['nick']}: {m['count']} message{'s' if m['count'] != 1 else ''}")
        if not missed:
            lines.append("  nobody wrote to you directly")
        return Output("\n".join(lines), {"away": False, "since": state.since,
                                         "missed": missed})

    @hookimpl
    def lanchat_register_commands(self, registry: Any) -> None:
        """Add /away and /back."""
        registry.add("away", self._away_cmd, help="auto-reply to direct messages",
                     usage="/away [TEXT]")
        registry.add("back", self._back_cmd, help="end /away; who wrote meanwhile",
                     usage="/back")

    @hookimpl
    def lanchat_message_received(self, node: Any, message: dict[str, Any]) -> None:
        """While away, answer a direct message's sender once; never a broadcast or a bot."""
        if message.get("to") != "direct":
            return
        sender = message["from"]
        text = str(message.get("text", ""))
        if is_auto_reply(text):
            return
        with self._lock:
            state = self._away.get(node.info()["id"])
            if state is None:
                return
            seen = state.missed.setdefault(sender["id"], {"id": sender["id"], "count": 0,
                                                          "nick": sender["nick"],
                                                          "first": self.clock()})
            seen["count"] += 1
            seen["nick"] = sender["nick"]
            if sender["id"] in state.replied:
                return
            state.replied.add(sender["id"])
            reply = PREFIX + state.text
        try:
            node.send(sender["id"], reply)
        except (LookupError, ValueError) as exc:
            node.emit("error", code="plugin", message=f"lanchat-away could not reply: {exc}")


plugin = AwayPlugin()
