"""A session's state machine without I/O: the in-channel handshake and every state change.

Messages go in (`receive`), and a `Step` comes out: what to send, whether the session just
became ready, what to hand to the node, whether it closes and why. Every change of state
goes through `protocol.transition` (the table `protocol.TRANSITIONS`, beside `ALLOWED`).
`Session` (session.py) feeds it from TLS; tests feed two machines to each other in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lanchat.api import CloseReason
from lanchat.identity import Identity, auth_payload, new_nonce, verify_proof
from lanchat.nicks import clean_received_nick
from lanchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Bye,
    Change,
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
    is_durable,
    transition,
)


@dataclass(frozen=True)
class Step:
    """What one event means for the session."""

    send: tuple[Message, ...] = ()
    ready: bool = False  # the handshake finished just now
    deliver: Message | None = None  # for the node: chat, ack, nick, file control
    fault: str = ""  # close with this reason ...
    tell_peer: bool = True  # ... and tell the peer (a `refused` frame)
    closed_by_peer: str = ""  # the peer said bye with this reason


class SessionMachine:
    """The state, the handshake and the peer's proven facts of one session."""

    def __init__(self, identity: Identity, nick: str, own_port: int, *, server: bool,
                 instance: str = "",
                 check_client: Callable[[str], str | None] = lambda _: None) -> None:
        self.identity = identity
        self.nick = nick
        self.own_port = own_port
        self.server = server
        self.instance = instance
        self.check_client = check_client
        self.state = SessionState.HANDSHAKE
        self.nonce = new_nonce()
        self.peer_id = ""
        self.peer_nick = ""
        self.peer_port = 0
        self.peer_instance = ""
        self.was_ready = False
        self.close_reason = CloseReason.ERROR
        self.close_detail = "connection lost"

    @property
    def ready(self) -> bool:
        """Authenticated and not closing."""
        return self.state is SessionState.READY

    def move(self, change: Change, reason: CloseReason | None = None,
             detail: str = "") -> None:
        """Apply one change from the table (ProtocolError if it has none); remember why a
        closing session closes."""
        self.state = transition(self.state, change)
        if reason is not None:
            self.close_reason, self.close_detail = reason, detail

    def start(self, server_id: str = "") -> Step:
        """The secure channel is up. A server says hello; a client has checked the
        server's certificate and passes the id it proves."""
        if self.server:
            return Step(send=(Hello(self.identity.node_id, self.nick, self.nonce,
                                    instance=self.instance),))
        self.peer_id = server_id
        return Step()

    def receive(self, message: Message) -> Step:
        """One message from the peer."""
        try:
            check_allowed(self.state, self.server, message)
        except ProtocolError as exc:
            return Step(fault=exc.reason)
        if is_durable(message):  # chat, or a registered durable kind (room messages)
            if not self.was_ready:
                return Step(fault="chat message before authentication")
            return Step(deliver=message)
        if isinstance(message, Hello | Auth) and message.version != PROTOCOL_VERSION:
            return Step(fault=f"peer speaks lanchat protocol v{message.version}, this node v"
                              f"{PROTOCOL_VERSION}; both sides need the same lanchat version")
        if isinstance(message, Hello):
            return self._hello(message)
        if isinstance(message, Auth):
            return self._auth(message)
        if isinstance(message, Welcome):
            return self._ready()
        if isinstance(message, Refused):
            return Step(fault=f"refused by peer: {message.reason}", tell_peer=False)
        if isinstance(message, Ping):
            return Step(send=(Pong(),))
        if isinstance(message, Pong):
            return Step()
        if isinstance(message, Bye):
            if self.state is SessionState.CLOSING:  # both said bye at once: ours stands
                self.move(Change.PEER_BYE)
            else:
                self.move(Change.PEER_BYE, CloseReason.BYE, message.reason)
            return Step(closed_by_peer=message.reason)
        if isinstance(message, NickChange):
            self.peer_nick = clean_received_nick(message.nick, self.peer_id, source="nick")
            return Step(deliver=NickChange(self.peer_nick))
        return Step(deliver=message)

    def _hello(self, message: Hello) -> Step:
        if message.node_id != self.peer_id:
            return Step(fault="hello id does not match the certificate")
        self.peer_nick = clean_received_nick(message.nick, self.peer_id, source="hello")
        self.peer_instance = message.instance
        payload = auth_payload(message.nonce, self.peer_id, self.identity.node_id)
        return Step(send=(Auth(self.identity.node_id, self.nick, self.identity.key_b64,
                               self.identity.sign(payload), self.own_port,
                               instance=self.instance),))

    def _auth(self, message: Auth) -> Step:
        payload = auth_payload(self.nonce, self.identity.node_id, message.node_id)
        try:
            proven = verify_proof(message.key, message.sig, payload)
        except ValueError as exc:
            return Step(fault=f"key proof refused: {exc}")
        if proven != message.node_id:
            return Step(fault="key proof is for another id")
        self.peer_id, self.peer_port = proven, message.port
        self.peer_nick = clean_received_nick(message.nick, proven, source="auth")
        self.peer_instance = message.instance
        refusal = self.check_client(proven)
        if refusal:
            return Step(fault=refusal)
        step = self._ready()
        return Step(send=(Welcome(),), ready=step.ready)

    def _ready(self) -> Step:
        self.move(Change.HANDSHAKE_DONE)
        self.was_ready = True
        return Step(ready=True)
