"""One authenticated TLS 1.3 connection to one peer, as an asyncio protocol on the node's loop.

Only the loop thread touches the transport, so one SSL object is never used by two
threads. The server shows its certificate (the client pins its id); the client proves its
key inside the channel by signing the server's nonce and id.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from lanchat.api import LANCHAT_CAPABILITIES, CloseReason, SessionOwner
from lanchat.handshake import SessionMachine, Step
from lanchat.identity import Identity, node_id_from_cert
from lanchat.link import LinkTimeout
from lanchat.protocol import (
    HANDSHAKE_TIMEOUT_S,
    HEADER,
    MAX_ACK_IDS,
    SESSION_DEAD_AFTER_S,
    SESSION_PING_AFTER_S,
    Ack,
    Bye,
    Change,
    FrameDecoder,
    Heartbeat,
    Message,
    NickChange,
    Ping,
    ProtocolError,
    Refused,
    SessionState,
    encode,
    is_durable,
)
from lanchat.text import safe_line

log = logging.getLogger(__name__)


WRITE_HIGH_WATER = 1 << 20
WRITE_LOW_WATER = 256 << 10
CLOSE_DEADLINE_S = 2.0  # a closing connection that does not finish is dropped


__all__ = ["CloseReason", "Session", "SessionOwner"]


class Session(asyncio.Protocol):
    """One peer connection: TLS framing, heartbeats, clean close; the handshake and the
    state are the `SessionMachine`'s (handshake.py).

    Implements `lanchat.api.PeerSession` for the lanchat peer kind."""

    kind = "lanchat"
    capabilities = LANCHAT_CAPABILITIES

    def __init__(self, owner: SessionOwner, identity: Identity, nick: str, own_port: int, *,
                 server: bool, address: str, expected_id: str | None = None,
                 loop: asyncio.AbstractEventLoop, instance: str = "",
                 liveness: tuple[float, float] = (SESSION_PING_AFTER_S,
                                                  SESSION_DEAD_AFTER_S),
                 link_timeout_s: float = 0.0) -> None:
        self.owner = owner
        self.link_timeout_s = link_timeout_s
        self.identity = identity
        self.server = server
        self.address = address
        self.expected_id = expected_id
        self.loop = loop
        self.machine = SessionMachine(identity, nick, own_port, server=server,
                                      instance=instance,
                                      check_client=lambda pid: owner.check_client(self, pid))
        self.paused = False
        self.closed = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self.liveness = liveness
        self._heartbeat = Heartbeat(loop.time(), *liveness)
        self._timer: asyncio.TimerHandle | None = None
        self._link: LinkTimeout | None = None
        self.frames_in = 0
        self.frames_out = 0
        self._partial_since: float | None = None
        self._reading_paused = False
        self.dial_key: str | None = None
        self.on_ready: asyncio.Future[bool] | None = None

    def __repr__(self) -> str:
        role = "in" if self.server else "out"
        return (f"<Session {role} {safe_line(self.peer_nick or '?')} {self.address} "
                f"{self.state.value}>")

    # -- facts (the machine's) ----------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Where the session is in `protocol.TRANSITIONS`."""
        return self.machine.state

    @property
    def ready(self) -> bool:
        """True once authenticated and until closing."""
        return self.machine.ready

    @property
    def peer_id(self) -> str:
        """The proven id of the peer ("" before the handshake proves it)."""
        return self.machine.peer_id

    @property
    def peer_nick(self) -> str:
        """What the peer calls itself (untrusted text)."""
        return self.machine.peer_nick

    @property
    def peer_instance(self) -> str:
        """The peer's instance id (changes at each start of the peer)."""
        return self.machine.peer_instance

    @property
    def peer_port(self) -> int:
        """The peer's listening port."""
        return self.machine.peer_port

    @peer_port.setter
    def peer_port(self, port: int) -> None:
        self.machine.peer_port = port

    @property
    def nick(self) -> str:
        """Our nick as this session tells it."""
        return self.machine.nick

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """TLS is up: start the in-channel handshake."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self._link = LinkTimeout.start(sock, self.link_timeout_s, self.loop)
        self._arm(HANDSHAKE_TIMEOUT_S)
        if self.server:
            self._apply(self.machine.start())
            return
        ssl_obj = transport.get_extra_info("ssl_object")
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        if not der:
            self.fail("server showed no certificate")
            return
        try:
            server_id = node_id_from_cert(der)
        except ValueError as exc:
            self.fail(f"unreadable server certificate: {exc}")
            return
        refusal = self.owner.check_server(self, server_id)
        if refusal:
            self.fail(refusal, tell_peer=False)
            return
        self._apply(self.machine.start(server_id))

    def data_received(self, data: bytes) -> None:
        """Decode frames and hand them on; a protocol error closes this session only."""
        now = self.loop.time()
        self._heartbeat.received(now)
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self.fail(exc.reason)
            return
        # A peer trickling one frame forever would look alive to the heartbeat: time it.
        if not self._decoder.buffered:
            self._partial_since = None
        elif messages or self._partial_since is None:
            self._partial_since = now
        chats: list[Message] = []
        for message in messages:
            if self.state in (SessionState.CLOSED,) or self._failing:
                return
            self.frames_in += 1
            step = self.machine.receive(message)
            if step.deliver is not None and is_durable(step.deliver):
                chats.append(step.deliver)
                continue
            if chats:
                self.owner.session_chats(self, chats)
                chats = []
            self._apply(step)
        if chats and not self._failing and self.state is not SessionState.CLOSED:
            self.owner.session_chats(self, chats)

    @property
    def _failing(self) -> bool:
        return self.machine.close_reason is CloseReason.ERROR and self.state in (
            SessionState.CLOSING, SessionState.CLOSED)

    def _apply(self, step: Step) -> None:
        """Do what the machine decided."""
        for out in step.send:
            self.send(out)
        if step.fault:
            self.fail(step.fault, tell_peer=step.tell_peer)
            return
        if step.ready:
            self._become_ready()
        if step.closed_by_peer and self._transport is not None:
            self._transport.close()
        if isinstance(step.deliver, Ack):
            self.owner.session_acks(self, step.deliver.ids)
        elif step.deliver is not None:
            self.owner.session_message(self, step.deliver)

    def eof_received(self) -> bool | None:
        """The peer closed its side; a frame cut short is an error."""
        try:
            self._decoder.at_eof()
        except ProtocolError as exc:
            self.machine.close_detail = exc.reason
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Report the end once."""
        if self._timer is not None:
            self._timer.cancel()
        if self._link is not None:
            self._link.stop()
        if self.state is SessionState.CLOSED:
            return
        machine = self.machine
        if exc is not None and machine.close_reason is CloseReason.ERROR:
            machine.close_detail = str(exc) or type(exc).__name__
        machine.move(Change.LOST)
        if self.on_ready is not None and not self.on_ready.done():
            self.on_ready.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner.session_closed(self, machine.close_reason, machine.close_detail)

    def pause_reading(self) -> None:
        """Stop reading from the peer (its TCP window fills; nothing is lost)."""
        if self._transport is not None and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again; the silence while paused was ours, not the peer's."""
        if self._transport is not None and not self._transport.is_closing():
            self._reading_paused = False
            self._heartbeat.received(self.loop.time())
            if self._partial_since is not None:
                self._partial_since = self.loop.time()
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        """The send buffer is full: stop pumping the outbox."""
        self.paused = True

    def resume_writing(self) -> None:
        """The send buffer drained: pump again."""
        self.paused = False
        if self.ready:
            self.owner.session_writable(self)

    # -- sending ------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Write one message."""
        self.write_frame(encode(message))

    def write_outbox(self, payloads: Sequence[bytes]) -> None:
        """Write stored chat payloads as frames, in one write."""
        self.write_frame(b"".join(HEADER.pack(len(p)) + p for p in payloads))

    def set_nick(self, nick: str) -> None:
        """Our nick changed: tell the peer."""
        self.machine.nick = nick
        self.send(NickChange(nick))

    def write_frame(self, frame: bytes) -> None:
        """Write bytes of whole frames."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(frame)
        self.frames_out += 1
        self._heartbeat.sent(self.loop.time())

    def ack(self, ids: list[str]) -> None:
        """Confirm stored messages, in as few frames as the limit allows."""
        for i in range(0, len(ids), MAX_ACK_IDS):
            self.send(Ack(tuple(ids[i:i + MAX_ACK_IDS])))

    def close(self, reason: str = "quit") -> None:
        """Say bye (if ready) and close; buffered frames are still sent."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        if self.state is SessionState.READY:
            self.send(Bye(reason))
        self.machine.move(Change.LOCAL_CLOSE, CloseReason.LOCAL, reason)
        if self._transport is not None:
            self._transport.close()
        self._arm(CLOSE_DEADLINE_S)

    def fail(self, reason: str, *, tell_peer: bool = True) -> None:
        """Close because of a fault; the peer is told why when it can be."""
        if self.state is SessionState.CLOSED:
            return
        log.info("session %r closed: %s", self, safe_line(reason))
        if tell_peer and self._transport is not None and not self._transport.is_closing():
            self.send(Refused(reason[:200]))
        self.machine.move(Change.FAULT, CloseReason.ERROR, reason)
        if self._transport is not None:
            self._transport.close()
        self._arm(CLOSE_DEADLINE_S)

    def abort(self) -> None:
        """Drop the connection at once."""
        if self._transport is not None:
            self._transport.abort()

    # -- internals ----------------------------------------------------------------------

    def _become_ready(self) -> None:
        self._heartbeat = Heartbeat(self.loop.time(), *self.liveness)
        self._arm(None)
        if self.on_ready is not None and not self.on_ready.done():
            self.on_ready.set_result(True)
        self.owner.session_ready(self)

    def _arm(self, delay: float | None) -> None:
        """Schedule the next timer: a fixed deadline, or the heartbeat's when None."""
        if self._timer is not None:
            self._timer.cancel()
        if delay is None:
            when = self._heartbeat.next_deadline(self.loop.time())
            self._timer = self.loop.call_at(when, self._on_timer)
        else:
            self._timer = self.loop.call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        if self.state is SessionState.HANDSHAKE:
            self.machine.move(Change.TIMEOUT, CloseReason.ERROR,
                              "handshake not finished in time")
        elif self.state is SessionState.READY:
            return
        if self._transport is not None:
            self._transport.abort()

    def _on_timer(self) -> None:
        if self.state is not SessionState.READY:
            return
        if self._reading_paused:  # the silence and the unfinished frame are ours
            self._heartbeat.received(self.loop.time())
            if self._partial_since is not None:
                self._partial_since = self.loop.time()
        action = self._heartbeat.poll(self.loop.time())
        if action == "dead":
            self.machine.move(Change.TIMEOUT, CloseReason.TIMEOUT, "peer went silent")
            if self._transport is not None:
                self._transport.abort()
            return
        if self._decoder.buffered and self._partial_since is not None and (
                self.loop.time() - self._partial_since > self.liveness[1]):
            self.fail("a frame was not finished in time (sender stalled mid-frame)")
            return
        if action == "ping":
            self.send(Ping())
        self._arm(None)
