"""Session states: which messages each state accepts (`ALLOWED`), every state change
(`TRANSITIONS`), message kinds registered by capabilities (`register_message`), and the
heartbeat rules with a caller-supplied clock."""

from __future__ import annotations

import enum

from lanchat.protocol.base import SESSION_DEAD_AFTER_S, SESSION_PING_AFTER_S, Message, ProtocolError
from lanchat.protocol.chat import (
    Ack,
    Auth,
    Bye,
    Chat,
    Hello,
    NickChange,
    Ping,
    Pong,
    Refused,
    SlowDown,
    Welcome,
)
from lanchat.protocol.files import FileAnswer, FileCancel, FileOffer
from lanchat.protocol.framing import MESSAGE_TYPES


class SessionState(enum.Enum):
    """Life of one session."""

    HANDSHAKE = "handshake"
    READY = "ready"
    CLOSING = "closing"
    CLOSED = "closed"


_SERVER_HANDSHAKE = (Auth, Refused)
_CLIENT_HANDSHAKE = (Hello, Welcome, Refused)
_READY = (Chat, Ack, Ping, Pong, NickChange, Bye, Refused, SlowDown, FileOffer, FileAnswer,
          FileCancel)

# Which messages each state accepts, per role: the one transition table.
ALLOWED: dict[tuple[SessionState, bool], tuple[type[Message], ...]] = {
    (SessionState.HANDSHAKE, True): _SERVER_HANDSHAKE,
    (SessionState.HANDSHAKE, False): _CLIENT_HANDSHAKE,
    (SessionState.READY, True): _READY,
    (SessionState.READY, False): _READY,
    (SessionState.CLOSING, True): (Bye, Ack, Pong, Ping, Chat),
    (SessionState.CLOSING, False): (Bye, Ack, Pong, Ping, Chat),
    (SessionState.CLOSED, True): (),
    (SessionState.CLOSED, False): (),
}


# Frames stored and acked by the group commit (the outbox path), as opposed to control.
DURABLE_TYPES: set[type[Message]] = {Chat}


def register_message(cls: type[Message], *, durable: bool = False) -> None:
    """Add a capability's message type (e.g. rooms) to the decoder and the ready states.

    A durable type has a `msg_id` and travels like `Chat`: through the outbox, stored in
    the group commit, acked. Registering the same class twice is a no-op."""
    existing = MESSAGE_TYPES.get(cls.T)
    if existing is cls:
        return
    if existing is not None or not cls.T:
        raise ValueError(f"message type {cls.T!r} is already taken")
    MESSAGE_TYPES[cls.T] = cls
    states = [SessionState.READY] + ([SessionState.CLOSING] if durable else [])
    for state in states:
        for server in (True, False):
            ALLOWED[(state, server)] = (*ALLOWED[(state, server)], cls)
    if durable:
        DURABLE_TYPES.add(cls)


def is_durable(message: Message) -> bool:
    """True for a message that goes through the outbox, the group commit and acks."""
    return type(message) in DURABLE_TYPES


class Change(enum.Enum):
    """What moves a session from one state to another."""

    HANDSHAKE_DONE = "handshake_done"  # server: the client's proof holds; client: welcome
    LOCAL_CLOSE = "local_close"  # we say bye (quit, duplicate, forgotten)
    PEER_BYE = "peer_bye"  # the peer said bye
    FAULT = "fault"  # a protocol error, a refusal either way, a check that failed
    TIMEOUT = "timeout"  # handshake not finished, or the peer went silent
    LOST = "lost"  # the connection is gone


_OPEN = (SessionState.HANDSHAKE, SessionState.READY)
_ANY = (*_OPEN, SessionState.CLOSING)

# Every state change a session may make: (from, change) -> to. The one transition table,
# beside ALLOWED (which messages each state accepts); `transition` is the only way to move.
TRANSITIONS: dict[tuple[SessionState, Change], SessionState] = {
    (SessionState.HANDSHAKE, Change.HANDSHAKE_DONE): SessionState.READY,
    **{(s, Change.LOCAL_CLOSE): SessionState.CLOSING for s in _OPEN},
    **{(s, Change.PEER_BYE): SessionState.CLOSING for s in _ANY},  # both said bye at once
    **{(s, Change.FAULT): SessionState.CLOSING for s in _ANY},
    **{(s, Change.TIMEOUT): SessionState.CLOSING for s in _ANY},
    **{(s, Change.LOST): SessionState.CLOSED for s in _ANY},
}


def transition(state: SessionState, change: Change) -> SessionState:
    """The state after `change`; ProtocolError if the table has no such move."""
    after = TRANSITIONS.get((state, change))
    if after is None:
        raise ProtocolError(f"no session change {change.value!r} from state {state.value}")
    return after


def check_allowed(state: SessionState, server: bool, message: Message) -> None:
    """Raise ProtocolError if `message` may not arrive in `state`."""
    if not isinstance(message, ALLOWED[(state, server)]):
        raise ProtocolError(f"unexpected {message.T!r} in state {state.value}")


class Heartbeat:
    """Decides when to ping and when a silent peer is dead; the caller passes `now`."""

    def __init__(self, now: float, interval: float = SESSION_PING_AFTER_S,
                 dead_after: float = SESSION_DEAD_AFTER_S) -> None:
        self.interval = interval
        self.dead_after = dead_after
        self.last_rx = now
        self.last_tx = now
        self.last_ping = now

    def received(self, now: float) -> None:
        """Record that bytes arrived."""
        self.last_rx = now

    def sent(self, now: float) -> None:
        """Record that bytes were sent."""
        self.last_tx = now

    def poll(self, now: float) -> str | None:
        """Return 'dead', 'ping' or None for what to do now; 'ping' means one is sent now."""
        if now - self.last_rx >= self.dead_after:
            return "dead"
        idle = now - min(self.last_rx, self.last_tx)
        if idle >= self.interval and now - self.last_ping >= self.interval:
            self.last_ping = now
            return "ping"
        return None

    def next_deadline(self, now: float) -> float:
        """Return when `poll` should next be called."""
        ping_at = max(min(self.last_rx, self.last_tx), self.last_ping) + self.interval
        return max(min(self.last_rx + self.dead_after, ping_at), now + 0.05)
