"""Which buffer each event belongs in, at what activity level; runs on the event thread.

Messages go to their conversation (a room, everyone, or the peer's direct buffer); who
comes and goes to `all` (and the peer's buffer); file events to the peer's buffer; errors
to the notices buffer and, so they are never missed, above the prompt wherever you are.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from lanchat.events import Event
from lanchat.shell import render
from lanchat.shell.buffers import EVERYONE, NOTICES, Buffers, Kind, Level, Line, Sent, mentions
from lanchat.shell.printer import Printer
from lanchat.shell.state import ShellState
from lanchat.text import safe_line

NOTE_CHARS = 40  # of a message quoted in a late "delivered" line
# An outgoing line waits this long for its delivery mark before it is written without it
# (a LAN delivery takes a few ms); later marks follow as a "delivered" line.
DELIVERY_WAIT_S = 0.3
ECHOES_KEPT = 64  # own lines typed here whose echo waits for (or came with) its event
ROOM_EVENTS = ("room_joined", "room_left", "member_joined", "member_left", "topic")


class Router:
    """Renders events into lines and adds them to their buffers."""

    def __init__(self, state: ShellState, buffers: Buffers, printer: Printer,
                 redraw: Callable[[], None],
                 save_soon: Callable[[], None] = lambda: None) -> None:
        self.state = state
        self.buffers = buffers
        self.printer = printer
        self.redraw = redraw  # the toolbar changed (thread-safe)
        self.save_soon = save_soon  # read markers moved (saved now and then)
        # Under the buffers lock: message id -> the buffer it was typed in (its `sent`
        # event not seen yet), or -> its line (the event came before the command returned).
        self._typed: OrderedDict[str, str] = OrderedDict()
        self._drawn: OrderedDict[str, tuple[str, Line]] = OrderedDict()

    def on_event(self, event: Event) -> None:
        """Render the event (before the state forgets old nicks), then update the state."""
        try:
            self._route(event)
        except Exception:  # noqa: BLE001 - an odd event never stops the others
            self.add(NOTICES, Kind.NOTICES, NOTICES,
                     Line(render.notice(f"-- {safe_line(event.name)}", event.ts)))
        self.state.apply(event)
        if event.name.startswith(("peer_", "file_", "room_", "member_")):
            self.redraw()

    def add(self, key: str, kind: Kind, name: str, line: Line, *, incoming_id: str = "",
            own_id: str = "", level: Level = Level.MESSAGE, bell: bool = False) -> bool:
        """Put a line in a buffer; write it if that buffer is on screen."""
        with self.buffers.lock:  # one step, so a switch or repaint sees it once
            shown = self.buffers.add(key, kind, name, line, incoming_id=incoming_id,
                                     own_id=own_id, level=level)
            if shown and not self.buffers.loading:
                self.printer.put(line, bell=bell)
        if shown:  # written with its batch, which redraws the prompt and toolbar once
            self.save_soon()
            return True
        if bell:
            self.printer.ring()
        self.redraw()  # the hotlist
        return False

    def _route(self, event: Event) -> None:
        name, f = event.name, event.fields
        if name == "message":
            self._message(event)
        elif name == "sent":
            self._sent(event)
        elif name == "delivered":
            self._delivered(str(f["id"]), str(f["to"]))
        elif name in ("peer_joined", "peer_left", "peer_updated"):
            self._peer(event)
        elif name == "error":
            self._notice(render.error(str(f.get("message", f.get("code", "error")))))
        elif name == "not_delivered":
            line = render.event_lines(event, self.state)
            assert line is not None
            self._notice(line)
        elif name in ("file_offer", "file_done", "file_failed"):
            self._file(event)
        elif name == "room_invited":  # a notice: nothing is joined until /join
            from lanchat.rooms.render import invitation_line  # loaded with the node's rooms

            self._notice(render.notice(invitation_line(f), event.ts))
        elif name in ROOM_EVENTS:
            self._room(event)
        elif name == "output":  # a command that answers later (e.g. /doctor)
            self._output(event)

    def _output(self, event: Event) -> None:
        """A late command answer goes where you are, under the command's name."""
        f = event.fields
        with self.buffers.lock:
            key = self.buffers.current
            buf = self.buffers.get(key)
            assert buf is not None
            command = f"{safe_line(str(f.get('command') or ''))} " if f.get("command") else ""
            self.add(key, buf.kind, buf.name,
                     Line(render.echo(command.strip() or "(answer)")), level=Level.LOW)
            if f.get("text"):
                self.add(key, buf.kind, buf.name, Line(render.output(str(f["text"]))),
                         level=Level.LOW)

    def _message(self, event: Event) -> None:
        f = event.fields
        sender = f["from"]
        sender_id, text = str(sender["id"]), str(f["text"])
        nick = self.state.display(sender_id, str(sender["nick"]))
        room = f.get("room")
        if room:  # a room's buffer is its id; its name says whose it is if shared
            key, kind, title = str(f.get("room_id") or room), Kind.ROOM, str(room)
        elif f["to"] == "broadcast":
            key, kind, title = EVERYONE, Kind.EVERYONE, EVERYONE
        else:
            key, kind, title = sender_id, Kind.DIRECT, nick
        mentioned = mentions(text, self.state.own_nick)
        level = (Level.HIGHLIGHT if mentioned
                 else Level.PRIVATE if kind is Kind.DIRECT else Level.MESSAGE)
        line = Line(render.chat_line(event.ts, sender_id, nick, text))
        bell = self.state.bell and (kind is Kind.DIRECT or mentioned)
        self.add(key, kind, title, line, incoming_id=str(f["id"]), level=level, bell=bell)

    def _sent(self, event: Event) -> None:
        """Our own message, whichever face or plugin sent it: its line, with the pending
        mark, in its conversation's buffer (the only place the shell draws it)."""
        f = event.fields
        msg_id, text, to = str(f["id"]), str(f["text"]), f["to"]
        recipients = [str(r["id"]) for r in f["recipients"]]
        if to == "room" and f.get("room"):
            key, kind, name = str(f.get("room_id") or f["room"]), Kind.ROOM, str(f["room"])
        elif to == "broadcast":
            key, kind, name = EVERYONE, Kind.EVERYONE, EVERYONE
        elif recipients:
            first = f["recipients"][0]
            key, kind = recipients[0], Kind.DIRECT
            name = self.state.display(key, str(first.get("nick") or key[:8]))
        else:
            return
        ts = float(f.get("sent") or event.ts)
        sent = Sent(msg_id, recipients, group=kind is not Kind.DIRECT, key=key, text=text,
                    ts=ts)
        line = Line(render.chat_line(ts, self.state.own_id, str(f["from"]["nick"]), text),
                    sent, time.monotonic() + DELIVERY_WAIT_S)
        with self.buffers.lock:
            self.add(key, kind, name, line, own_id=msg_id, level=Level.NONE)
            typed_in = self._typed.pop(msg_id, None)
            if typed_in is None:
                self._keep(self._drawn, msg_id, (name, line))
            else:
                self._echo(typed_in, name, line)

    def typed(self, msg_id: str, where: str) -> None:
        """A message was typed in buffer `where`: if its line goes to another buffer, an
        echo (`[me -> bob] text`) shows here too (UI thread; the event may come first)."""
        with self.buffers.lock:
            drawn = self._drawn.pop(msg_id, None)
            if drawn is None:
                self._keep(self._typed, msg_id, where)
            else:
                self._echo(where, *drawn)

    def _echo(self, where: str, name: str, line: Line) -> None:
        buf = self.buffers.get(where)
        if buf is None or where == line.buffer or line.sent is None:
            return
        sent = line.sent
        echo = render.message_line(sent.ts, self.state.own_id, self.state.own_nick,
                                   sent.text, direct=True, to_nick=name)
        self.add(where, buf.kind, buf.name, Line(echo, sent, line.hold_until),
                 level=Level.NONE)

    @staticmethod
    def _keep(recent: OrderedDict[str, Any], key: str, value: Any) -> None:
        recent[key] = value
        while len(recent) > ECHOES_KEPT:
            recent.popitem(last=False)

    def _delivered(self, msg_id: str, peer_id: str) -> None:
        found = self.buffers.delivered(msg_id, peer_id)
        if found is None:
            return
        sent, lines = found
        self.printer.poke()  # a line held for its mark may go now
        if sent.complete and any(line.shown_incomplete for line in lines):
            who = (f"{sent.total} of {sent.total} in {safe_line(sent.key)}" if sent.group
                   else self._nick(next(iter(sent.recipients))))
            text = safe_line(sent.text)
            text = text if len(text) <= NOTE_CHARS else text[:NOTE_CHARS - 1] + "~"
            for key in dict.fromkeys(ln.buffer for ln in lines if ln.shown_incomplete):
                buf = self.buffers.get(key)
                if buf is not None:  # where the line was shown without its mark
                    note = Line(render.notice(
                        f"✓ delivered to {who} (sent {render.clock(sent.ts)}): {text}"))
                    self.add(buf.key, buf.kind, buf.name, note, level=Level.LOW)

    def _nick(self, peer_id: str) -> str:
        peer = self.state.peer(peer_id)
        return self.state.names.display(peer) if peer else peer_id[:8]

    def _peer(self, event: Event) -> None:
        line = render.event_lines(event, self.state)
        peer = event["peer"]
        peer_id = str(peer["id"])
        nick = self.state.display(peer_id, str(peer["nick"]))
        if event.name == "peer_updated":
            self.buffers.rename(peer_id, nick)
        if line is None:
            return
        self.add(EVERYONE, Kind.EVERYONE, EVERYONE, Line(line), level=Level.LOW)
        if self.buffers.get(peer_id) is not None:
            self.add(peer_id, Kind.DIRECT, nick, Line(line), level=Level.LOW)

    def _notice(self, line: render.Fragments) -> None:
        if not self.add(NOTICES, Kind.NOTICES, NOTICES, Line(line)):
            self.printer.put(Line(line))  # errors show wherever you are

    def _file(self, event: Event) -> None:
        line = render.event_lines(event, self.state)
        if line is None:
            return
        peer_id, nick = self._file_peer(event.fields)
        if not peer_id:
            self._notice(line)
            return
        level = Level.PRIVATE if event.name == "file_offer" else Level.MESSAGE
        self.add(peer_id, Kind.DIRECT, nick, Line(line), level=level,
                 bell=event.name == "file_offer" and self.state.bell)

    def _file_peer(self, f: Any) -> tuple[str, str]:
        sender = f.get("from")
        if isinstance(sender, dict):
            sender_id = str(sender.get("id", ""))
            return sender_id, self.state.display(sender_id, str(sender.get("nick", "")))
        known = self.state.unfinished.get(str(f.get("transfer", "")))
        if known is not None:
            return known.peer, self.state.display(known.peer, known.nick)
        peer_id = str(f.get("peer") or "")
        return peer_id, self.state.display(peer_id, peer_id[:8])

    def _room(self, event: Event) -> None:
        f = event.fields
        title = str(f.get("room") or "")
        if not title:
            return
        room = str(f.get("room_id") or title)
        line = render.room_line(event, self.state)
        if event.name == "room_joined":
            self.buffers.ensure(room, Kind.ROOM, title)
            self.buffers.rename(room, title)
            self.buffers.set_parted(room, False)
        level = Level.MESSAGE if event.name == "topic" else Level.LOW
        self.add(room, Kind.ROOM, title, Line(line), level=level)
        if event.name == "room_left":
            self.buffers.set_parted(room, True)
