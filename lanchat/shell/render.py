"""Events and command outputs as styled lines; every peer-provided string is made safe here.

A line is a list of (style, text) fragments, the shape prompt-toolkit prints. This module
imports nothing from prompt-toolkit, so the event thread can render without it.
"""

from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING, Any

from lanchat.events import Event
from lanchat.identity import short_id
from lanchat.shell.state import ShellState
from lanchat.text import safe_line, safe_text

if TYPE_CHECKING:  # the type only: rendering runs without importing prompt-toolkit
    from prompt_toolkit.formatted_text import StyleAndTextTuples as Fragments
else:
    Fragments = list

NICK_COLOURS = ("ansigreen", "ansiyellow", "ansiblue", "ansimagenta", "ansicyan",
                "ansibrightgreen", "ansibrightblue", "ansibrightmagenta")
STYLE_RULES: dict[str, str] = {
    **{f"nick{i}": f"{c} bold" for i, c in enumerate(NICK_COLOURS)},
    "time": "ansibrightblack",
    "notice": "ansibrightblack",
    "error": "ansired bold",
    "output": "",
    "echo": "ansibrightblack",
    "action": "italic",
    "prompt": "bold",
    "mark": "ansibrightblack",
    "bottom-toolbar.current": "bold",
    "bottom-toolbar.low": "",
    "bottom-toolbar.unread": "ansiwhite bold",
    "bottom-toolbar.private": "ansibrightgreen bold",
    "bottom-toolbar.mention": "ansibrightmagenta bold",
    "bottom-toolbar": "noreverse bg:ansiblack fg:ansiwhite",
}
INDENT = " " * 6


def nick_class(node_id: str) -> str:
    """The stable colour class of a node: a hash of its id picks one of the colours."""
    return f"class:nick{zlib.crc32(node_id.encode()) % len(NICK_COLOURS)}"


def clock(ts: float) -> str:
    """Local time as HH:MM."""
    return time.strftime("%H:%M", time.localtime(ts))


def _body(style: str, text: str) -> Fragments:
    """Text whose continuation lines are indented under the first."""
    return [(style, text.replace("\n", "\n" + INDENT))]


def message_line(ts: float, sender_id: str, sender_nick: str, text: str, *,
                 direct: bool, to_nick: str | None = None) -> Fragments:
    """One chat line: time, coloured nick, text; `/me` text as an action."""
    nick = safe_line(sender_nick)
    body = safe_text(text)
    style = nick_class(sender_id)
    out: Fragments = [("class:time", clock(ts) + " ")]
    if body.startswith("/me "):
        out += [("class:action", "* "), (style, nick), ("class:action", " ")]
        out += _body("class:action", body[4:])
        if direct:
            out.append(("class:notice", f" (to {safe_line(to_nick or 'you')})"))
        return out
    if direct:
        out += [("", "["), (style, nick), ("", f" -> {safe_line(to_nick or 'you')}] ")]
    else:
        out += [("", "<"), (style, nick), ("", "> ")]
    return out + _body("", body)


def chat_line(ts: float, sender_id: str, sender_nick: str, text: str) -> Fragments:
    """A line inside its conversation's buffer: `12:03 <bob> hi`, `/me` as an action."""
    nick = safe_line(sender_nick)
    body = safe_text(text)
    style = nick_class(sender_id)
    out: Fragments = [("class:time", clock(ts) + " ")]
    if body.startswith("/me "):
        return out + [("class:action", "* "), (style, nick), ("class:action", " ")] + \
            _body("class:action", body[4:])
    return out + [("", "<"), (style, nick), ("", "> ")] + _body("", body)


def room_line(event: Event, state: ShellState) -> Fragments:
    """Membership and topic of a room, as a notice in its buffer."""
    f = event.fields
    room = safe_line(str(f.get("room", "?")))
    who = _nick_of(state, f.get("member") or f.get("peer") or f.get("by") or "")
    name = event.name
    if name == "room_joined":
        return notice(f"-- you joined {room}", event.ts)
    if name == "room_left":
        how = " (you were removed)" if f.get("reason") == "kicked" else ""
        return notice(f"-- you left {room}{how}", event.ts)
    if name == "member_joined":
        return notice(f"-- {who} joined {room}", event.ts)
    if name == "member_left":
        reason = f.get("reason")
        return notice(f"-- {who} left {room}"
                      + (f" ({safe_line(str(reason))})" if reason else ""), event.ts)
    topic = safe_line(str(f.get("topic", "")))
    by = f" (set by {who})" if f.get("by") else ""
    return notice(f"-- topic of {room}: {topic}{by}", event.ts)


def notice(text: str, ts: float | None = None) -> Fragments:
    """A dim line of our own (the text must already be safe)."""
    return [("class:time", clock(ts if ts is not None else time.time()) + " "),
            ("class:notice", text)]


def error(text: str) -> Fragments:
    """A red line; the text is made safe."""
    return [("class:error", "!! " + safe_text(text).replace("\n", "\n   "))]


def output(text: str) -> Fragments:
    """A command's answer; made safe because it may quote peers."""
    return [("class:output", safe_text(text))]


def echo(line: str) -> Fragments:
    """The line the user typed, shown again above its answer."""
    return [("class:echo", "> " + safe_text(line).replace("\n", "\n  "))]


def event_lines(event: Event, state: ShellState) -> Fragments | None:
    """The line for an event, or None; call before `state.apply(event)` (old nicks)."""
    f = event.fields
    name = event.name
    if name == "message":
        sender = f["from"]
        return message_line(event.ts, str(sender["id"]),
                            state.display(str(sender["id"]), str(sender["nick"])),
                            str(f["text"]), direct=f["to"] == "direct")
    if name in ("peer_joined", "peer_left", "peer_updated"):
        return _peer_line(event, state)
    if name == "output":  # an answer that came later (/doctor)
        return output(str(f.get("text", "")))
    if name == "error":
        return error(str(f.get("message", f.get("code", "error"))))
    if name == "not_delivered":
        peer = state.peer(str(f.get("to", "")))
        who = safe_line(peer.nick) if peer else str(f.get("to", "?"))[:8]
        return error(f"message {str(f['id'])[:8]} not delivered to {who}: {f['reason']}")
    if name == "file_offer":
        return notice(f"{_nick_of(state, f.get('from'))} offers "
                      f"{safe_line(str(f.get('name', '?')))} ({_size(f.get('size'))}); "
                      f"/accept {safe_line(str(f.get('number', f.get('transfer', '?'))))} or "
                      f"/decline {safe_line(str(f.get('number', f.get('transfer', '?'))))}",
                      event.ts)
    if name == "file_done":
        return _file_done(event, state)
    if name == "file_failed":
        return _file_failed(event, state)
    return None


def _transfer_words(f: Any, state: ShellState) -> tuple[str, str]:
    """The file's name and the peer's nick, safe, as far as they are known."""
    known = state.unfinished.get(str(f.get("transfer", "")))
    name = f.get("name") or (known.name if known else "") or str(f.get("transfer", "?"))[:8]
    peer_id = known.peer if known else str(f.get("peer") or "")
    nick = _nick_of(state, {"id": peer_id, "nick": known.nick if known else ""}) \
        if peer_id else "the peer"
    return safe_line(str(name)), nick


def _file_done(event: Event, state: ShellState) -> Fragments:
    f = event.fields
    name, nick = _transfer_words(f, state)
    size = f" ({_size(f['size'])})" if f.get("size") is not None else ""
    if f.get("direction") == "in":
        return notice(f"received {name}{size} from {nick}, checked: "
                      f"{safe_line(str(f.get('path', '')))}", event.ts)
    return notice(f"sent {name}{size} to {nick}; {nick} checked it", event.ts)


def _file_failed(event: Event, state: ShellState) -> Fragments:
    """A transfer that stopped, said in words: declined (and why), cancelled, failed."""
    f = event.fields
    name, nick = _transfer_words(f, state)
    reason = str(f.get("reason", ""))
    detail = safe_line(str(f.get("detail") or ""))
    why = f": {detail}" if detail else ""
    incoming = f.get("direction") == "in"
    if f.get("resumable"):
        return notice(f"{name} {'from' if incoming else 'to'} {nick} interrupted "
                      f"({safe_line(reason)}); it goes on where it stopped when "
                      f"{nick} is back", event.ts)
    if reason == "declined":
        text = f"you declined {name} from {nick}" if incoming else f"{nick} declined {name}"
        return notice(text + why, event.ts)
    if reason == "cancelled":
        return notice(f"you cancelled {name} {'from' if incoming else 'to'} {nick}", event.ts)
    if reason == "cancelled by peer":
        return notice(f"{nick} cancelled {name}{why}", event.ts)
    if reason == "timeout":
        text = (f"the offer of {name} from {nick} expired" if incoming
                else f"{nick} did not answer the offer of {name} in time")
        return notice(text, event.ts)
    return error(f"{name} {'from' if incoming else 'to'} {nick} failed: {reason}"
                 + (f": {f.get('detail')}" if f.get("detail") else ""))


def _peer_line(event: Event, state: ShellState) -> Fragments | None:
    peer = event["peer"]
    nick = state.names.display(peer)
    tag: Fragments = [(nick_class(str(peer["id"])), nick),
                      ("class:notice", f" [{peer['number']}]")]
    if event.name == "peer_joined":
        return notice("-- ", event.ts) + tag + [("class:notice", " is here")]
    if event.name == "peer_left":
        return (notice("-- ", event.ts) + tag
                + [("class:notice", f" left ({safe_line(str(event['reason']))})")])
    old = state.peer(str(peer["id"]))
    if old is not None and old.nick != peer["nick"]:
        return (notice(f"-- {safe_line(old.nick)} is now ", event.ts) + tag)
    return None


def _nick_of(state: ShellState, who: Any) -> str:
    """A peer (an id, or an {id, nick} object) as the display-name rule shows it."""
    if isinstance(who, dict):
        peer_id, nick = str(who.get("id", "")), str(who.get("nick", ""))
    else:
        peer_id, nick = str(who), ""
    if state.peer(peer_id) is None and not nick:
        return safe_line(peer_id)[:12] or "?"
    return state.display(peer_id, nick or peer_id[:8])


def _size(size: Any) -> str:
    try:
        n = float(size)
    except (TypeError, ValueError):
        return "? bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def banner(info: dict[str, Any]) -> Fragments:
    """The first lines: who we are and how to get help."""
    return [("", "lanchat: you are "), (nick_class(str(info["id"])), safe_line(info["nick"])),
            ("class:notice", f" ({short_id(info['id'])}) on port {info['port']}\n"),
            ("class:notice", "/help lists commands; Esc-Enter adds a line; Ctrl-D or /quit"
                             " leaves")]
