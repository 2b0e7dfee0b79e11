"""The typed seams of a node: what a session is, what it reports to, what an extension is
and what an extension may use of the node.

Every seam is a `typing.Protocol`, so a foreign peer kind (a LocalSend or XEP-0174 session)
or a new capability (rooms) plugs in by shape, not by inheriting from lanchat's classes.
Everything here is called on the node's loop thread unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lanchat.protocol import Message, SessionState
from lanchat.store import DurableKind

if TYPE_CHECKING:
    from lanchat.config import Config
    from lanchat.events import Event
    from lanchat.identity import Identity
    from lanchat.peers import PeerTable
    from lanchat.store import Store


class CloseReason(enum.Enum):
    """Why a session ended, as `peer_left` and logs name it."""

    BYE = "bye"
    TIMEOUT = "timeout"
    ERROR = "error"
    LOCAL = "local"


class Capability(enum.Enum):
    """What a peer kind can carry; the node only routes what a session says it can."""

    CHAT = "chat"  # outbox rows (text messages) with acks
    CONTROL = "control"  # lanchat control messages (nick, file offers, ...)
    FILES = "files"  # file transfer


LANCHAT_CAPABILITIES = frozenset({Capability.CHAT, Capability.CONTROL, Capability.FILES})


class PeerSession(Protocol):
    """One live connection to one peer, of any kind (lanchat TLS, LocalSend, XMPP).

    Identity fields are filled by the time `SessionOwner.session_ready` is called:
    `peer_id` is the key-derived id the node routes by (a foreign kind maps its peer to
    one), `peer_nick` what the peer calls itself (untrusted text)."""

    kind: str  # "lanchat", "localsend", "xmpp", ...
    capabilities: frozenset[Capability]
    peer_port: int
    address: str
    server: bool  # True when the peer dialled us
    dial_key: str | None  # the dialer that made it (static "host:port" or a peer id)
    expected_id: str | None  # the id (or prefix) a dialled peer must prove, if known
    paused: bool  # the send buffer is full: the outbox pump waits for session_writable
    closed: asyncio.Future[None]

    @property
    def peer_id(self) -> str:
        """The proven, key-derived id of the peer ("" until proven)."""
        ...

    @property
    def peer_nick(self) -> str:
        """What the peer calls itself (untrusted text)."""
        ...

    @property
    def peer_instance(self) -> str:
        """Changes at each start of the peer; "" when the kind has none."""
        ...

    @property
    def state(self) -> SessionState:
        """Where the session is in `protocol.TRANSITIONS`."""
        ...

    @property
    def ready(self) -> bool:
        """Authenticated and not closing."""
        ...

    def send(self, message: Message) -> None:
        """Write one control message (only when CONTROL is in capabilities)."""
        ...

    def write_outbox(self, payloads: Sequence[bytes]) -> None:
        """Write stored chat messages, each the encoded JSON payload of a `Chat`, in order.
        A foreign kind decodes them (`protocol.decode_payload`) and reports acks itself."""
        ...

    def ack(self, ids: list[str]) -> None:
        """Confirm stored messages to the peer."""
        ...

    def set_nick(self, nick: str) -> None:
        """Our nick changed: tell the peer if the kind can."""
        ...

    def close(self, reason: str = "quit") -> None:
        """Say goodbye and close; buffered data is still sent."""
        ...

    def fail(self, reason: str, *, tell_peer: bool = True) -> None:
        """Close because of a fault."""
        ...

    def abort(self) -> None:
        """Drop the connection at once."""
        ...

    def pause_reading(self) -> None:
        """Stop reading from the peer (backpressure)."""
        ...

    def resume_reading(self) -> None:
        """Read again."""
        ...


class SessionOwner(Protocol):
    """What a session reports to (the node)."""

    def check_server(self, session: PeerSession, peer_id: str) -> str | None:
        """Return a refusal reason for the server's key, or None to go on."""
        ...

    def check_client(self, session: PeerSession, peer_id: str) -> str | None:
        """Return a refusal reason for the client's key, or None to go on."""
        ...

    def session_ready(self, session: PeerSession) -> None:
        """The handshake is done both ways."""
        ...

    def session_chats(self, session: PeerSession, chats: list[Message]) -> None:
        """Durable messages arrived: chat, or frames of a registered kind such as room
        messages (`protocol.register_message(..., durable=True)`); to store, then ack."""
        ...

    def session_acks(self, session: PeerSession, ids: tuple[str, ...]) -> None:
        """The peer stored these messages."""
        ...

    def session_message(self, session: PeerSession, message: Message) -> None:
        """Any other message in the ready state (nick, files)."""
        ...

    def session_writable(self, session: PeerSession) -> None:
        """The send buffer drained below the low-water mark."""
        ...

    def session_closed(self, session: PeerSession, reason: CloseReason, detail: str) -> None:
        """The connection is gone."""
        ...


class RuntimeApi(Protocol):
    """The node's two threads: the loop (sockets, timers, store commits) and the event
    thread (listeners). Methods here may be called from any thread."""

    loop: asyncio.AbstractEventLoop
    counters: dict[str, int]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the loop thread and return its result."""
        ...

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the loop thread later; returns at once."""
        ...

    def on_loop(self) -> bool:
        """True when called on the loop thread."""
        ...

    def emit(self, name: str, /, **fields: Any) -> None:
        """Queue an event for the listeners."""
        ...

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for every event, on the event thread, in order."""
        ...

    def count(self, key: str, n: int = 1) -> None:
        """Add to a counter (loop thread)."""
        ...


class PresenceApi(Protocol):
    """The peer table as extensions change it: sightings in, `peer_*` events out."""

    @property
    def table(self) -> PeerTable:
        """The table itself, for reads on the loop thread."""
        ...

    def seen(self, peer_id: str, via: str, now: float, **fields: Any) -> None:
        """A source saw the peer (nick, host, address, port as the source knows them)."""
        ...

    def lost(self, peer_id: str, via: str, reason: str, now: float) -> None:
        """A source no longer sees the peer."""
        ...

    def prune(self, max_size: int) -> int:
        """Forget the oldest offline peers beyond `max_size` that nothing keeps."""
        ...


class DurableHandler(DurableKind, Protocol):
    """A capability whose frames travel like chat messages (outbox rows, group commit,
    acks, dedupe): registered with `NodeHost.add_durable_kind` from `Extension.start`."""

    def admit(self, peer_id: str, frames: list[Message]) -> list[Message]:
        """Frames from a session that may be stored; the rest are dropped (count them)
        and acked all the same, so the sender stops resending them."""
        ...

    def stored(self, fresh: list[tuple[str, Message]]) -> None:
        """After the commit: frames to show now (emit their events)."""
        ...

    def acked(self, done: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """(peer, id) outbox rows the peers acked (as the ack is read, for rows the
        session carried; else after the commit that finds the row); return the pairs
        that are not this kind's (they get the plain `delivered` event). Each pair comes
        once."""
        ...

    def stored_out(self, out: list[tuple[list[str], Message]]) -> None:
        """After the commit: (peers, frame) this node queued to send are stored; emit a
        `sent` event for each the user posted (not for copies relayed or sent again)."""
        ...

    def store_failed(self) -> None:
        """The commit failed: drop state that assumed it would succeed."""
        ...


class NodeHost(Protocol):
    """What an extension may use of the node: public methods and read-only facts."""

    config: Config
    nick: str
    port: int
    runtime: RuntimeApi

    @property
    def presence(self) -> PresenceApi:
        """The peer table (loop thread)."""
        ...

    @property
    def node_id(self) -> str:
        """This node's id."""
        ...

    @property
    def identity(self) -> Identity:
        """This node's key and certificate."""
        ...

    @property
    def addresses(self) -> list[str]:
        """The addresses this node announces."""
        ...

    def set_addresses(self, addresses: list[str]) -> None:
        """Announce these addresses (discovery chose the interfaces)."""
        ...

    def emit(self, name: str, /, **fields: Any) -> None:
        """Queue an event (any thread)."""
        ...

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Listen to events (event thread)."""
        ...

    def send_control(self, peer_id: str, message: Message) -> None:
        """Send a control message to a peer (any thread)."""
        ...

    def resolve(self, ref: str) -> dict[str, Any]:
        """A peer by nick, number or id (any thread)."""
        ...

    @property
    def store(self) -> Store:
        """The node's database (`Store.transact`/`read` for an extension's own tables)."""
        ...

    def add_durable_kind(self, handler: DurableHandler) -> None:
        """Carry a capability's frames like chat messages (loop thread, in `start`)."""
        ...

    def queue_frame(self, peers: list[str], message: Message) -> None:
        """Queue a durable frame of a registered kind to these peers (any thread)."""
        ...

    def watch_sessions(self, ready: Callable[[PeerSession], None]) -> None:
        """Call `ready(session)` each time a session speaks for its peer (loop thread)."""
        ...


class Extension(Protocol):
    """A capability plugged into a node (discovery, transfer, rooms, a peer kind).

    Added with `Node.add_extension` before `start()`; all methods run on the loop."""

    async def start(self, node: NodeHost) -> None:
        """The node listens: start (raise `NodeError` to refuse to start)."""
        ...

    async def stop(self) -> None:
        """The node closes: say goodbye, end threads."""
        ...

    def on_message(self, session: PeerSession, message: Message) -> bool:
        """A control message no one before handled; True when this extension took it."""
        ...

    def set_nick(self, nick: str) -> None:
        """This node's nick changed."""
        ...

    def stats(self) -> dict[str, Any]:
        """Figures for doctor and tests."""
        ...


@runtime_checkable
class PeerKind(Protocol):
    """An extension that brings a foreign peer kind (LocalSend, XEP-0174): its peers are in
    the table with `Peer.kind == kind`, and the node asks it, not the dialer, to reach one."""

    kind: str

    def dial(self, peer_id: str) -> None:
        """Open a session to this peer if it has none (loop thread; returns at once)."""
        ...
