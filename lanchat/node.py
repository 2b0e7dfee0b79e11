"""The Node: the one public API over sessions, store, peer table and extensions.

A small facade over objects that each own their state (docs/ARCHITECTURE.md, "The node"):
`Runtime` (the loop and event threads) and, while it runs, `Core` (the store,
`SessionRegistry`, `Dialer`, `Delivery`, `Presence` and the session owner between
them). Public methods are
thread-safe and return at once; outcomes arrive as events. Extensions (discovery, file
transfer, rooms, foreign peer kinds) implement `lanchat.api.Extension` and are added with
`add_extension()` before `start()`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from lanchat.api import (
    CloseReason,
    DurableHandler,
    Extension,
    PeerSession,
    PresenceApi,
    RuntimeApi,
)
from lanchat.config import Config, save_nick
from lanchat.core import Core
from lanchat.delivery import (  # noqa: F401 - re-exported: the node's public names
    EVENTS_HIGH_WATER,
    EVENTS_LOW_WATER,
    check_text,
    new_message_id,
)
from lanchat.dialing import local_addresses
from lanchat.errors import NodeError
from lanchat.events import Event
from lanchat.home import HomeLock
from lanchat.identity import Identity, fingerprint, safety_code
from lanchat.nicks import NickError, check_nick
from lanchat.notices import Warnings
from lanchat.peers import PeerTable
from lanchat.protocol import FileAnswer, FileOffer, Message
from lanchat.runtime import CALL_TIMEOUT_S, Runtime
from lanchat.store import Store, StoreError
from lanchat.targets import StaticTarget, parse_targets

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT_S = 1.0  # doctor's check that the chat port takes connections
TRUST_LEVELS = ("tofu", "verified", "trusted")

__all__ = ["CALL_TIMEOUT_S", "EVENTS_HIGH_WATER", "EVENTS_LOW_WATER", "Node", "NodeError",
           "StaticTarget", "check_text", "local_addresses", "new_message_id", "parse_targets"]


class Node:
    """A lanchat node. Use as a context manager, or call start() and close()."""

    def __init__(self, config: Config,
                 addresses: Callable[[], list[str]] = local_addresses) -> None:
        self.config = config
        try:
            self.nick = check_nick(config.nick)
        except NickError as exc:
            raise NodeError(f"nick {config.nick!r}: {exc}; choose another with --nick") from None
        self.port = 0
        self.instance = secrets.token_hex(8)
        self._runtime = Runtime()
        self.runtime: RuntimeApi = self._runtime
        self.warnings = Warnings(self.emit)
        self.extensions: list[Extension] = []
        self._addresses: list[str] = []
        self._find_addresses = addresses  # when neither --interface nor discovery names any
        self._parts: Core | None = None
        self._home = HomeLock()
        self._closed = False
        self._session_watchers: list[Callable[[PeerSession], None]] = []

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_extension(self, extension: Extension) -> None:
        """Plug in a capability: before `start()`, or on a running node, where it starts
        now and this call waits for it (from any thread but the loop's)."""
        if not self._runtime.running or self._parts is None:
            self.extensions.append(extension)
            return
        if self._runtime.on_loop():
            raise RuntimeError("add_extension waits for the loop; call it from another thread")

        async def add() -> None:
            await extension.start(self)
            self.extensions.append(extension)

        self._runtime.submit(add()).result(CALL_TIMEOUT_S)

    def start(self) -> None:
        """Open the home, listen, dial static peers and start extensions; emit `ready`."""
        self._home.take(self.config.home)
        try:
            self._parts = Core(self.config, self._runtime, self.warnings, nick=lambda: self.nick,
                               instance=self.instance, extensions=self.extensions,
                               watchers=self._session_watchers)
        except (StoreError, ValueError, OSError) as exc:
            self._home.release()
            raise NodeError(str(exc)) from None
        except Exception:
            self._home.release()
            raise
        save_nick(self.config.home, self.nick)
        self._runtime.start()
        try:
            self._runtime.submit(self._async_start()).result(CALL_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def _async_start(self) -> None:
        core = self._running
        self._addresses = await core.dialer.listen()
        self.port = core.dialer.port
        await core.start(self)
        if not self._addresses:
            self._addresses = self._find_addresses()
        self.emit("ready", id=self.node_id, nick=self.nick, port=self.port,
                  addresses=list(self._addresses), fingerprint=fingerprint(self.node_id))

    def close(self) -> None:
        """Say bye to every peer, stop the threads and close the store; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._runtime.running and self._parts is not None:
            try:
                self._runtime.submit(self._parts.close()).result(CALL_TIMEOUT_S)
            except TimeoutError:
                log.warning("close: peers and extensions not done after %.0f s; stopping "
                            "the loop anyway", CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - closing must go on
                log.warning("close: %r", exc)
        self._runtime.stop()
        if self._parts is not None:
            self._parts.store.close()
        self._home.release()

    @property
    def _running(self) -> Core:
        if self._parts is None:
            raise NodeError("the node is not started")
        return self._parts

    # -- facts ------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._running.identity.node_id

    @property
    def identity(self) -> Identity:
        """This node's key and certificate."""
        return self._running.identity

    @property
    def store(self) -> Store:
        """The history database."""
        return self._running.store

    @property
    def presence(self) -> PresenceApi:
        """The peer table as extensions report to it (loop thread)."""
        return self._running.presence

    @property
    def table(self) -> PeerTable:
        """The peer table (reads on the loop thread)."""
        return self._running.presence.table

    @property
    def counters(self) -> dict[str, int]:
        """The node's counters."""
        return self.runtime.counters

    @property
    def addresses(self) -> list[str]:
        """The addresses this node announces."""
        return list(self._addresses)

    def set_addresses(self, addresses: list[str]) -> None:
        """Announce these addresses (an extension chose the interfaces)."""
        self._addresses = list(addresses)

    # -- threads and events -----------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the loop thread and return its result (for table reads)."""
        return self._runtime.call(fn, *args)

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for every event, on the event thread, in order."""
        self._runtime.subscribe(listener)

    def on_idle(self, hook: Callable[[], None]) -> None:
        """Call `hook()` on the event thread whenever the event queue runs empty."""
        self._runtime.on_idle(hook)

    def emit(self, name: str, /, **fields: Any) -> None:
        """Queue an event for the listeners (any thread)."""
        self._runtime.emit(name, **fields)

    # -- public API (any thread) ---------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Own id, nick, fingerprint, port and addresses."""
        return {"id": self.node_id, "nick": self.nick, "port": self.port,
                "addresses": list(self._addresses),
                "fingerprint": fingerprint(self.node_id)}

    def peers(self) -> list[dict[str, Any]]:
        """Snapshot of the peer table, by list number."""
        return self.call(self._running.presence.all)

    def resolve(self, ref: str) -> dict[str, Any]:
        """The one known peer `ref` names: a list number, id, NICK#ID or a nick held by one
        key only; raise AmbiguousName (a LookupError listing candidates) or LookupError."""
        return self.call(self._running.presence.resolve, ref)

    def send(self, ref: str, text: str) -> str:
        """Queue a direct message; return its id. Raises LookupError, ValueError."""
        check_text(text)
        self._running.check_room()
        return self._queue([self._running.chat_peer(ref)], text, broadcast=False)

    def broadcast(self, text: str) -> tuple[str, list[str]]:
        """Queue a message to every known peer; return its id and the peer ids."""
        check_text(text)
        self._running.check_room()
        targets = self._running.everyone()
        if not targets:
            return "", []
        return self._queue(targets, text, broadcast=True), targets

    def _queue(self, peers: list[str], text: str, *, broadcast: bool) -> str:
        return self._running.delivery.queue(peers, text, broadcast=broadcast)

    def add_durable_kind(self, handler: DurableHandler) -> None:
        """Carry a capability's frames like chat messages (loop thread, in `start`)."""
        self._running.add_durable_kind(handler)

    def queue_frame(self, peers: list[str], message: Message) -> None:
        """Queue a durable frame of a registered kind to these peers (any thread)."""
        self._running.delivery.queue_frame(peers, message)

    def watch_sessions(self, ready: Callable[[PeerSession], None]) -> None:
        """Call `ready(session)` each time a session speaks for its peer (loop thread)."""
        self._session_watchers.append(ready)

    def send_control(self, peer_id: str, message: Message) -> None:
        """Send a control message to a peer (thread-safe); it waits in memory, not in the
        store, until a session to the peer is up."""
        self._runtime.call_soon(self._running.delivery.send_control, peer_id, message)
        if isinstance(message, FileOffer | FileAnswer):
            self._runtime.call_soon(self._running.exchanged, peer_id)

    def set_nick(self, nick: str) -> str:
        """Change this node's nick and tell every peer; raise NickError (a ValueError) if it
        breaks the nick rule. The nick is kept for the next start."""
        nick = check_nick(nick)
        self._runtime.call_soon(self._set_nick, nick)
        return nick

    def _set_nick(self, nick: str) -> None:
        self.nick = nick
        save_nick(self.config.home, nick)
        self._running.set_nick(nick)

    def history(self, ref: str | None = None, limit: int = 50, *, before: int | None = None,
                broadcast: bool | None = None) -> list[dict[str, Any]]:
        """Stored messages, oldest first, with one peer or all (any thread).

        `before`: only messages stored before this `seq` (a row's `seq`, or a `message`
        event's), to page back through a conversation; `broadcast`: only messages to
        everyone (True) or only direct ones (False)."""
        peer_id = self.resolve(ref)["id"] if ref else None
        rows = self.store.history(peer_id, limit, before=before, broadcast=broadcast)
        names = {p["id"]: p["nick"] for p in self.peers()}
        return [{"id": r.id, "peer": r.peer, "nick": r.nick if r.direction == "in" else
                 self.nick, "with": names.get(r.peer, r.peer), "direction": r.direction,
                 "to": "broadcast" if r.broadcast else "direct", "text": r.text, "ts": r.ts,
                 "seq": r.seq}
                for r in rows]

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Stored messages matching every word of `query`, oldest first."""
        names = {p["id"]: p["nick"] for p in self.peers()}
        return [{"id": r.id, "peer": r.peer, "nick": r.nick if r.direction == "in" else
                 self.nick, "with": names.get(r.peer, r.peer), "direction": r.direction,
                 "broadcast": r.broadcast, "text": r.text, "ts": r.ts}
                for r in self.store.search(query, limit)]

    def safety_code(self, ref: str) -> tuple[dict[str, Any], str]:
        """The peer and the code both sides read aloud to check their keys."""
        peer = self.resolve(ref)
        return peer, safety_code(self.node_id, peer["id"])

    def set_trust(self, ref: str, trust: str) -> dict[str, Any]:
        """Mark a peer 'verified', 'trusted' or back to 'tofu'; return the peer."""
        if trust not in TRUST_LEVELS:
            raise ValueError(f"trust is one of {', '.join(TRUST_LEVELS)}")
        peer = self.resolve(ref)
        return self.call(self._running.presence.set_trust, peer["id"], trust)

    def ignore(self, ref: str, on: bool = True) -> tuple[dict[str, Any], bool]:
        """Put a peer on /ignore (or take it off); return the peer and whether it changed.

        An ignored peer's messages are stored and acked as any other, but no `message`
        event is emitted for them: no screen, no script, no plugin hook sees them; /history
        and /search still do. Kept in the store across restarts."""
        peer = self.resolve(ref)
        return peer, self._running.ignore(peer["id"], on)

    def ignored(self) -> list[dict[str, Any]]:
        """The peers on /ignore (known ones with their nick; others by id)."""
        return self.call(self._running.ignored)

    def forget(self, ref: str) -> dict[str, Any]:
        """Drop a peer: its pins, its queued messages, its session and its list entry."""
        peer = self.resolve(ref)
        self.call(self._running.forget, peer["id"])
        return peer

    def probe_port(self, ip: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """True if this node's chat port takes TCP connections on `ip` (for doctor). The
        node knows the probe for its own and neither handshakes nor reports it."""
        return self._running.dialer.probe_port(ip, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters and per-session figures, for doctor and tests."""
        return self.call(self._running.stats)

    # -- the session owner for foreign peer kinds (loop thread): see `Core` ---------------

    def check_server(self, session: PeerSession, peer_id: str) -> str | None:
        """Refuse a server whose key is not the one expected or pinned."""
        return self._running.check_server(session, peer_id)

    def check_client(self, session: PeerSession, peer_id: str) -> str | None:
        """Refuse ourselves; bound the keys one address may bring and the peer table."""
        return self._running.check_client(session, peer_id)

    def session_ready(self, session: PeerSession) -> None:
        """Keep one session per peer, mark it online and send what waits for it."""
        self._running.session_ready(session)

    def session_chats(self, session: PeerSession, chats: list[Message]) -> None:
        """Queue received messages for the next group commit (within a stranger's budget)."""
        self._running.session_chats(session, chats)

    def session_acks(self, session: PeerSession, ids: tuple[str, ...]) -> None:
        """The peer stored these messages."""
        self._running.session_acks(session, ids)

    def session_writable(self, session: PeerSession) -> None:
        """The peer caught up: send more."""
        self._running.session_writable(session)

    def session_message(self, session: PeerSession, message: Message) -> None:
        """Nick changes, slow_down and offers' budget; anything else to the extensions."""
        self._running.session_message(session, message)

    def session_closed(self, session: PeerSession, reason: CloseReason, detail: str) -> None:
        """Forget the session; mark the peer offline if nothing else shows it."""
        self._running.session_closed(session, reason, detail)
