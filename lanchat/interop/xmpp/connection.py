"""XEP-0174 streams on the loop, and the one session per Bonjour chat peer.

`XmppStream` is one TCP connection carrying one XML stream each way (whoever opened it);
it parses with `stream.StreamParser` and reports to its `StreamOwner` (the xmpp extension).
`XmppSession` is what the node sees: the session interface of lanchat/api.py for one peer,
writing on the stream the peer opened when there is one (as libpurple does), else on ours,
and reading every stream of that peer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from lanchat.api import Capability, CloseReason, SessionOwner
from lanchat.delivery import new_message_id
from lanchat.interop.xmpp.stream import (
    FOOTER,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamParser,
    XmppError,
    chat_message,
    header,
    message_text,
    stream_error,
)
from lanchat.protocol import Chat, Message, ProtocolError, SessionState, decode_payload

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 5.0  # a connection must open its stream within this time
WRITE_HIGH_WATER = 256 * 1024  # bytes buffered before the pump waits


class StreamOwner(Protocol):
    """What a stream reports to (the xmpp extension), on the loop thread."""

    def stream_opened(self, stream: XmppStream, opened: StreamOpened) -> str | None:
        """The peer's header arrived: return a refusal reason, or None to go on."""
        ...

    def stream_ready(self, stream: XmppStream) -> None:
        """The stream is open both ways (after an accepted header)."""
        ...

    def stream_text(self, stream: XmppStream, text: str) -> None:
        """A chat message's text arrived."""
        ...

    def stream_closed(self, stream: XmppStream, error: str) -> None:
        """The connection is gone ('' when closed cleanly)."""
        ...

    def stream_writable(self, stream: XmppStream) -> None:
        """The write buffer drained."""
        ...


class XmppStream(asyncio.Protocol):
    """One XEP-0174 stream; `instance` is the peer's instance name once known."""

    def __init__(self, owner: StreamOwner, own_instance: str, *, server: bool,
                 instance: str = "", loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.own_instance = own_instance
        self.server = server
        self.instance = instance
        self.loop = loop
        self.address = ""
        self.ready = False
        self.paused = False
        self.stanzas_in = 0
        self.messages_out = 0
        self._parser = StreamParser()
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._error = ""
        self._closing = False
        self._header_sent = False
        self.session: Any = None  # the XmppSession this stream serves

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._header_late)
        if not self.server:
            transport.write(header(self.own_instance, self.instance))
            self._header_sent = True

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            events = self._parser.feed(data)
        except XmppError as exc:
            self.fail(exc.condition, exc.detail)
            return
        for event in events:
            if self._closing:
                return
            if isinstance(event, StreamOpened):
                self._opened(event)
            elif isinstance(event, StanzaReceived):
                self.stanzas_in += 1
                text = message_text(event.element)
                if text is not None and self.ready:
                    self.owner.stream_text(self, text)
            elif isinstance(event, StreamClosed):
                self.close()

    def _opened(self, opened: StreamOpened) -> None:
        if self.server:
            self.instance = opened.sender
        refusal = self.owner.stream_opened(self, opened)
        if refusal is not None:
            self.fail("not-authorized", refusal)
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.server and self._transport is not None:
            self._transport.write(header(self.own_instance, self.instance))
            self._header_sent = True
        self.ready = True
        self.owner.stream_ready(self)

    def _header_late(self) -> None:
        self.fail("connection-timeout", f"no stream header in {HEADER_TIMEOUT_S:g} s")

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.ready = False
        if exc is not None and not self._error:
            self._error = str(exc) or type(exc).__name__
        self.owner.stream_closed(self, self._error)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.owner.stream_writable(self)

    def send_text(self, text: str) -> None:
        """Write one chat message."""
        if self._transport is not None and not self._closing:
            self._transport.write(chat_message(self.own_instance, self.instance, text))
            self.messages_out += 1

    def close(self) -> None:
        """End our stream and the connection."""
        if self._transport is None or self._closing:
            return
        self._closing = True
        self.ready = False
        self._transport.write(FOOTER)
        self._transport.close()

    def fail(self, condition: str, detail: str) -> None:
        """Send a stream error and close; the reason is kept for the owner."""
        self._error = f"{condition}: {detail}"
        log.info("xmpp stream from %s refused: %s", self.address, self._error)
        if self._transport is None or self._closing:
            return
        self._closing = True
        self.ready = False
        opening = b"" if self._header_sent else header(self.own_instance, self.instance)
        self._transport.write(opening + stream_error(condition) + FOOTER)
        self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()


class XmppSession:
    """The session interface (lanchat/api.py PeerSession) for one XEP-0174 peer."""

    kind = "xmpp"
    capabilities = frozenset({Capability.CHAT})
    expected_id: str | None = None

    def __init__(self, owner: SessionOwner, peer_id: str, nick: str, instance: str,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.peer_id = peer_id
        self.peer_nick = nick
        self.peer_port = 0
        self.peer_instance = ""
        self.instance = instance
        self.address = ""
        self.server = False
        self.dial_key: str | None = None
        self.last_sent_seq = 0
        self.state = SessionState.HANDSHAKE
        self.closed: asyncio.Future[None] = loop.create_future()
        self.streams: list[XmppStream] = []

    def __repr__(self) -> str:
        return f"<XmppSession {self.instance!r} streams={len(self.streams)}>"

    @property
    def ready(self) -> bool:
        """At least one stream is open both ways."""
        return self.state is SessionState.READY and any(s.ready for s in self.streams)

    @property
    def paused(self) -> bool:
        """The stream we write on is full."""
        stream = self._writer()
        return stream is None or stream.paused

    @paused.setter
    def paused(self, value: bool) -> None:
        """The streams say when they are full; the node's view is read-only."""

    def _writer(self) -> XmppStream | None:
        """The stream the peer opened when there is one (libpurple reads there), else ours."""
        ready = [s for s in self.streams if s.ready]
        ready.sort(key=lambda s: not s.server)
        return ready[0] if ready else None

    def attach(self, stream: XmppStream) -> bool:
        """A stream of this peer became ready; True when it makes the session ready."""
        stream.session = self
        if stream not in self.streams:
            self.streams.append(stream)
        self.address = stream.address
        self.peer_port = self.peer_port or (0 if stream.server else _port_of(stream))
        self.server = stream.server if self.state is SessionState.HANDSHAKE else self.server
        if self.state is SessionState.HANDSHAKE:
            self.state = SessionState.READY
            return True
        return False

    def detach(self, stream: XmppStream, error: str) -> None:
        """A stream closed; the session ends with its last stream."""
        if stream in self.streams:
            self.streams.remove(stream)
        if self.streams or self.state is SessionState.CLOSED:
            return
        was_ready = self.state is not SessionState.HANDSHAKE
        self.state = SessionState.CLOSED
        if not self.closed.done():
            self.closed.set_result(None)
        if was_ready:
            reason = CloseReason.ERROR if error else CloseReason.BYE
            self.owner.session_closed(self, reason, error or "stream closed")

    def text_received(self, text: str) -> None:
        """One message from any of the peer's streams: stored and shown like any chat."""
        chat = Chat(new_message_id(), _now(), text, False, self.peer_nick)
        self.owner.session_chats(self, [chat])

    def write_outbox(self, payloads: Any) -> None:
        """Write stored chats as XMPP messages; XMPP has no receipts, so a message counts
        as delivered once written to the connection."""
        stream = self._writer()
        if stream is None:
            return
        ids: list[str] = []
        for payload in payloads:
            try:
                message = decode_payload(payload)
            except ProtocolError:
                continue
            if isinstance(message, Chat):
                stream.send_text(message.text)
                ids.append(message.msg_id)
        if ids:
            self.owner.session_acks(self, tuple(ids))

    def send(self, message: Message) -> None:
        """Control messages have no XMPP form; they are dropped."""
        log.debug("xmpp: no control messages (%s dropped)", type(message).__name__)

    def ack(self, ids: list[str]) -> None:
        """XMPP has no acks."""

    def set_nick(self, nick: str) -> None:
        """The nick travels in our presence (TXT), not in the stream."""

    def close(self, reason: str = "quit") -> None:
        """Close every stream with `</stream:stream>`."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSING if self.streams else SessionState.CLOSED
        for stream in list(self.streams):
            stream.close()
        if not self.streams and not self.closed.done():
            self.closed.set_result(None)

    def fail(self, reason: str, *, tell_peer: bool = True) -> None:
        """Close because of a fault."""
        for stream in list(self.streams):
            stream.fail("undefined-condition", reason)

    def abort(self) -> None:
        """Drop every stream at once."""
        for stream in list(self.streams):
            stream.abort()

    def pause_reading(self) -> None:
        """Backpressure: stop reading every stream."""
        for stream in self.streams:
            if stream._transport is not None:
                stream._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again."""
        for stream in self.streams:
            if stream._transport is not None:
                stream._transport.resume_reading()


def _port_of(stream: XmppStream) -> int:
    transport = stream._transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return int(peer[1]) if peer else 0


def _now() -> float:
    import time

    return time.time()
