"""One authenticated TLS 1.3 connection to one peer, as an asyncio protocol on the node's loop.

Only the loop thread touches the transport, so one SSL object is never used by two
threads. The server shows its certificate (the client pins its id); the client proves its
key inside the channel by signing the server's nonce and id.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Sequence

from lanchat.api import LANCHAT_CAPABILITIES, CloseReason, SessionOwner
from lanchat.identity import Identity, auth_payload, new_nonce, node_id_from_cert, verify_proof
from lanchat.nicks import clean_received_nick
from lanchat.protocol import (
    HANDSHAKE_TIMEOUT_S,
    HEADER,
    MAX_ACK_IDS,
    PROTOCOL_VERSION,
    SESSION_DEAD_AFTER_S,
    SESSION_PING_AFTER_S,
    Ack,
    Auth,
    Bye,
    FrameDecoder,
    Heartbeat,
    Hello,
    Message,
    NickChange,
    Ping,
    Pong,
    ProtocolError,
    Refused,
    SessionState,
    Welcome,
    check_allowed,
    encode,
    is_durable,
)
from lanchat.text import safe_line

log = logging.getLogger(__name__)
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux


def server_context(identity: Identity) -> ssl.SSLContext:
    """TLS 1.3 server context showing this node's certificate."""
    return tls_server_context(str(identity.cert_path), str(identity.key_path))


def tls_server_context(cert: str, key: str) -> ssl.SSLContext:
    """lanchat's TLS 1.3 server settings for a certificate and key (also the benchmarks')."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_NONE
    ctx.num_tickets = 0
    return ctx


def client_context() -> ssl.SSLContext:
    """TLS 1.3 client context; the server's key is checked against its id, not a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


WRITE_HIGH_WATER = 1 << 20
WRITE_LOW_WATER = 256 << 10


__all__ = ["CloseReason", "Session", "SessionOwner", "client_context", "server_context",
           "tls_server_context"]


class Session(asyncio.Protocol):
    """One peer connection: handshake, framing, heartbeats, clean close.

    Implements `lanchat.api.PeerSession` for the lanchat peer kind."""

    kind = "lanchat"
    capabilities = LANCHAT_CAPABILITIES

    def __init__(self, owner: SessionOwner, identity: Identity, nick: str, own_port: int, *,
                 server: bool, address: str, expected_id: str | None = None,
                 loop: asyncio.AbstractEventLoop,
                 liveness: tuple[float, float] = (SESSION_PING_AFTER_S,
                                                  SESSION_DEAD_AFTER_S),
                 link_timeout_s: float = 0.0) -> None:
        self.owner = owner
        self.link_timeout_s = link_timeout_s
        self.identity = identity
        self.nick = nick
        self.own_port = own_port
        self.server = server
        self.address = address
        self.expected_id = expected_id
        self.loop = loop
        self.state = SessionState.HANDSHAKE
        self.peer_id = ""
        self.peer_nick = ""
        self.peer_port = 0
        self.paused = False
        self.closed = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._nonce = new_nonce()
        self.liveness = liveness
        self._heartbeat = Heartbeat(loop.time(), *liveness)
        self._timer: asyncio.TimerHandle | None = None
        self._close_reason = CloseReason.ERROR
        self._close_detail = "connection lost"
        self.frames_in = 0
        self.frames_out = 0
        self._partial_since: float | None = None
        self._failed = False
        self._was_ready = False
        self._reading_paused = False
        self.instance = ""
        self.peer_instance = ""
        self.dial_key: str | None = None
        self.on_ready: asyncio.Future[bool] | None = None

    def __repr__(self) -> str:
        role = "in" if self.server else "out"
        return (f"<Session {role} {safe_line(self.peer_nick or '?')} {self.address} "
                f"{self.state.value}>")

    @property
    def ready(self) -> bool:
        """True once authenticated and until closing."""
        return self.state is SessionState.READY

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
                if self.link_timeout_s > 0 and _TCP_USER_TIMEOUT is not None:
                    # the kernel keeps timing unacknowledged data, however busy our loop is
                    sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT,
                                    int(self.link_timeout_s * 1000))
            except OSError:
                pass
        self._arm(HANDSHAKE_TIMEOUT_S)
        if self.server:
            self.send(Hello(self.identity.node_id, self.nick, self._nonce,
                            instance=self.instance))
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
        self.peer_id = server_id

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
            if self._failed or self.state is SessionState.CLOSED:
                return
            self.frames_in += 1
            try:
                check_allowed(self.state, self.server, message)
            except ProtocolError as exc:
                self.fail(exc.reason)
                return
            if is_durable(message):
                if not self._was_ready:
                    self.fail("chat message before authentication")
                    return
                chats.append(message)
                continue
            if chats:
                self.owner.session_chats(self, chats)
                chats = []
            self._dispatch(message)
        if chats and not self._failed and self.state is not SessionState.CLOSED:
            self.owner.session_chats(self, chats)

    def eof_received(self) -> bool | None:
        """The peer closed its side; a frame cut short is an error."""
        try:
            self._decoder.at_eof()
        except ProtocolError as exc:
            self._close_detail = exc.reason
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Report the end once."""
        if self._timer is not None:
            self._timer.cancel()
        if self.state is SessionState.CLOSED:
            return
        if exc is not None and self._close_reason is CloseReason.ERROR:
            self._close_detail = str(exc) or type(exc).__name__
        self.state = SessionState.CLOSED
        if self.on_ready is not None and not self.on_ready.done():
            self.on_ready.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner.session_closed(self, self._close_reason, self._close_detail)

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
        self.nick = nick
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
        self.state = SessionState.CLOSING
        self._close_reason, self._close_detail = CloseReason.LOCAL, reason
        if self._transport is not None:
            self._transport.close()
        self._arm(2.0)

    def fail(self, reason: str, *, tell_peer: bool = True) -> None:
        """Close because of a fault; the peer is told why when it can be."""
        if self.state is SessionState.CLOSED:
            return
        self._failed = True
        log.info("session %r closed: %s", self, safe_line(reason))
        if tell_peer and self._transport is not None and not self._transport.is_closing():
            self.send(Refused(reason[:200]))
        self._close_reason, self._close_detail = CloseReason.ERROR, reason
        self.state = SessionState.CLOSING
        if self._transport is not None:
            self._transport.close()
        self._arm(2.0)

    def abort(self) -> None:
        """Drop the connection at once."""
        if self._transport is not None:
            self._transport.abort()

    # -- internals ----------------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Hello | Auth) and message.version != PROTOCOL_VERSION:
            self.fail(f"peer speaks lanchat protocol v{message.version}, this node v"
                      f"{PROTOCOL_VERSION}; both sides need the same lanchat version")
            return
        if isinstance(message, Hello):
            if message.node_id != self.peer_id:
                self.fail("hello id does not match the certificate")
                return
            self.peer_nick = clean_received_nick(message.nick, self.peer_id, source="hello")
            self.peer_instance = message.instance
            payload = auth_payload(message.nonce, self.peer_id, self.identity.node_id)
            self.send(Auth(self.identity.node_id, self.nick, self.identity.key_b64,
                           self.identity.sign(payload), self.own_port,
                           instance=self.instance))
        elif isinstance(message, Auth):
            payload = auth_payload(self._nonce, self.identity.node_id, message.node_id)
            try:
                proven = verify_proof(message.key, message.sig, payload)
            except ValueError as exc:
                self.fail(f"key proof refused: {exc}")
                return
            if proven != message.node_id:
                self.fail("key proof is for another id")
                return
            self.peer_id, self.peer_port = proven, message.port
            self.peer_nick = clean_received_nick(message.nick, proven, source="auth")
            self.peer_instance = message.instance
            refusal = self.owner.check_client(self, proven)
            if refusal:
                self.fail(refusal)
                return
            self.send(Welcome())
            self._become_ready()
        elif isinstance(message, Welcome):
            self._become_ready()
        elif isinstance(message, Refused):
            self.fail(f"refused by peer: {message.reason}", tell_peer=False)
        elif isinstance(message, Ack):
            self.owner.session_acks(self, message.ids)
        elif isinstance(message, Ping):
            self.send(Pong())
        elif isinstance(message, Pong):
            pass
        elif isinstance(message, Bye):
            self._close_reason, self._close_detail = CloseReason.BYE, message.reason
            self.state = SessionState.CLOSING
            if self._transport is not None:
                self._transport.close()
        elif isinstance(message, NickChange):
            self.peer_nick = clean_received_nick(message.nick, self.peer_id, source="nick")
            self.owner.session_message(self, NickChange(self.peer_nick))
        else:
            self.owner.session_message(self, message)

    def _become_ready(self) -> None:
        self.state = SessionState.READY
        self._was_ready = True
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
            self._close_reason = CloseReason.ERROR
            self._close_detail = "handshake not finished in time"
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
            self._close_reason, self._close_detail = CloseReason.TIMEOUT, "peer went silent"
            self.state = SessionState.CLOSING
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
