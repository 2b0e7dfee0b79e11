"""The Node: the one public API over sessions, store, peer table and extensions.

A small facade over objects that each own their state (docs/ARCHITECTURE.md, "The node"):
`Runtime` (the loop and event threads), `SessionRegistry` (one session per peer, outbox
positions), `Dialer` (listener and dial loops), `Delivery` (group commit, outbox, acks,
backpressure) and `Presence` (the peer table and its events). Public methods are
thread-safe and return at once; outcomes arrive as events. Extensions (discovery, file
transfer, rooms, foreign peer kinds) implement `lanchat.api.Extension` and are added with
`add_extension()` before `start()`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lanchat.api import (
    Capability,
    CloseReason,
    DurableHandler,
    Extension,
    PeerKind,
    PeerSession,
    PresenceApi,
    RuntimeApi,
)
from lanchat.config import NICK_FILE, Config
from lanchat.delivery import (  # noqa: F401 - re-exported: the node's public names
    EVENTS_HIGH_WATER,
    EVENTS_LOW_WATER,
    Delivery,
    check_text,
    new_message_id,
)
from lanchat.dialing import Dialer, StaticTarget, local_addresses, parse_targets  # noqa: F401
from lanchat.errors import NodeError
from lanchat.events import Event
from lanchat.identity import Identity, fingerprint, safety_code
from lanchat.limits import MIN_SLOW_DOWN_S, Guard, Limits, store_full_message
from lanchat.naming import AmbiguousName
from lanchat.nicks import NickError, check_nick, replaced_nicks
from lanchat.notices import Warnings
from lanchat.peers import PeerTable
from lanchat.presence import Presence
from lanchat.protocol import FileAnswer, FileOffer, Message, NickChange, SlowDown
from lanchat.runtime import CALL_TIMEOUT_S, Runtime
from lanchat.sessions import SessionRegistry
from lanchat.store import Store, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

CLOSE_GRACE_S = 1.0  # how long sessions get to say bye at close
EXTENSION_STOP_S = 5.0  # how long one extension gets to stop (close waits CALL_TIMEOUT_S)
PROBE_TIMEOUT_S = 1.0  # doctor's check that the chat port takes connections
LOCK_FILE = "lock"
TRUST_LEVELS = ("tofu", "verified", "trusted")
CHAT_KINDS = ("lanchat", "xmpp")  # peer kinds that take chat messages

__all__ = ["CALL_TIMEOUT_S", "EVENTS_HIGH_WATER", "EVENTS_LOW_WATER", "Node", "NodeError",
           "StaticTarget", "check_text", "local_addresses", "new_message_id", "parse_targets"]


class _Parts:
    """What exists only while the node runs (made in `start`)."""

    def __init__(self, identity: Identity, store: Store, sessions: SessionRegistry,
                 delivery: Delivery, presence: Presence, dialer: Dialer,
                 guard: Guard) -> None:
        self.guard = guard
        self.identity = identity
        self.store = store
        self.sessions = sessions
        self.delivery = delivery
        self.presence = presence
        self.dialer = dialer


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
        self._talked: set[str] = set()  # peers a message or file went to or came from
        self.extensions: list[Extension] = []
        self._addresses: list[str] = []
        self._find_addresses = addresses  # when neither --interface nor discovery names any
        self._parts: _Parts | None = None
        self._lock_fd: int | None = None
        self._closing = False
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
        home = self.config.home
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create home {home}: {exc}") from None
        self._take_lock(home)
        try:
            self._parts = self._assemble()
        except (StoreError, ValueError, OSError) as exc:
            self._release_lock()
            raise NodeError(str(exc)) from None
        except Exception:
            self._release_lock()
            raise
        self._save_nick()
        self._runtime.start()
        try:
            self._runtime.submit(self._async_start()).result(CALL_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def _assemble(self) -> _Parts:
        identity = Identity.load_or_create(self.config.home)
        store = Store(self.config.home / "lanchat.db")
        try:
            store.forget_silent_peers()
            sessions = SessionRegistry(identity.node_id, self._runtime.loop.time)
            delivery = Delivery(self.runtime, store, sessions, lambda: self.nick,
                                self._dial, self._runtime.backlog,
                                self._runtime.when_drained, exchanged=self._exchanged)
            delivery.ignored = frozenset(store.ignored())
            presence = Presence(identity.node_id, store, self.runtime,
                                connected=sessions.connected, queued=delivery.queued,
                                dial=self._dial, warnings=self.warnings)
            dialer = Dialer(config=self.config, identity=identity, runtime=self.runtime,
                            sessions=sessions, owner=self, store=store, table=presence.table,
                            nick=lambda: self.nick, instance=self.instance,
                            wanted=delivery.wants, warnings=self.warnings)
        except BaseException:
            store.close()
            raise
        guard = Guard(Limits.from_env(), trust_of=presence.trust_of,
                      stored_today=store.bytes_from_since, store_size=store.size_bytes)
        return _Parts(identity, store, sessions, delivery, presence, dialer, guard)

    async def _async_start(self) -> None:
        parts = self._running
        self._addresses = await parts.dialer.listen()
        self.port = parts.dialer.port
        parts.dialer.start(parts.delivery.waiting())
        for ext in self.extensions:
            await ext.start(self)
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
                self._runtime.submit(self._async_close()).result(CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - closing must go on
                log.warning("close: %s", exc)
        self._runtime.stop()
        if self._parts is not None:
            self._parts.store.close()
        self._release_lock()

    async def _async_close(self) -> None:
        import asyncio

        parts = self._running
        self._closing = True
        await parts.dialer.stop()
        parts.delivery.flush()
        parts.dialer.close_listeners()
        # Peers hear bye first: no extension's stop (a probe still under way, threads to
        # join) may keep them from it, nor cut it short when close runs out of time.
        sessions = parts.sessions.every()
        for session in sessions:
            session.close("quit")
        # Extensions stop side by side, each in bounded time: discovery's goodbye must not
        # wait for a slower extension (a file server joining its threads).
        results = await asyncio.gather(
            *(asyncio.wait_for(ext.stop(), EXTENSION_STOP_S) for ext in self.extensions),
            return_exceptions=True)
        for ext, result in zip(self.extensions, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("stopping %s: %r", type(ext).__name__, result)
        waits = [s.closed for s in sessions if not s.closed.done()]
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_GRACE_S)
        for session in sessions:
            session.abort()

    def _take_lock(self, home: Path) -> None:
        fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise NodeError(
                f"home {home} is in use by another lanchat (pid {other or '?'}); "
                "give this one its own --home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _save_nick(self) -> None:
        """Keep the nick in the home for the next start (best effort: the node goes on)."""
        path = self.config.home / NICK_FILE
        try:
            if path.exists() and path.read_text(encoding="utf-8").strip() == self.nick:
                return
            tmp = path.with_suffix(".tmp")
            tmp.write_text(self.nick + "\n", encoding="utf-8")
            tmp.replace(path)
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("could not keep the nick in %s: %s", path, exc)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def _running(self) -> _Parts:
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
        self._check_room()
        table = self.table
        peer = table.get(ref)
        if peer is None:
            try:
                peer = table.resolve(ref)
            except AmbiguousName:
                self.resolve(ref)  # raises, listing trust too
                raise
        if peer.kind not in CHAT_KINDS:
            raise ValueError(f"{peer.nick} is a LocalSend device: it takes files (/file), "
                             "not messages")
        return self._queue([peer.id], text, broadcast=False)

    def broadcast(self, text: str) -> tuple[str, list[str]]:
        """Queue a message to every known peer; return its id and the peer ids."""
        check_text(text)
        self._check_room()
        # Everyone = every lanchat node; a Bonjour chat peer (unencrypted) gets direct
        # messages only, a LocalSend device no chat at all.
        targets = [p.id for p in self.table.all() if p.kind == "lanchat"]
        if not targets:
            return "", []
        return self._queue(targets, text, broadcast=True), targets

    def _check_room(self) -> None:
        """Raise ValueError while the store is at its size bound."""
        guard = self._running.guard
        if guard.store_full(time.time()):
            raise ValueError(store_full_message(guard.limits))

    def _queue(self, peers: list[str], text: str, *, broadcast: bool) -> str:
        return self._running.delivery.queue(peers, text, broadcast=broadcast)

    def add_durable_kind(self, handler: DurableHandler) -> None:
        """Carry a capability's frames like chat messages (loop thread, in `start`)."""
        self._running.delivery.add_kind(handler)

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
            self._runtime.call_soon(self._exchanged, peer_id)

    def set_nick(self, nick: str) -> str:
        """Change this node's nick and tell every peer; raise NickError (a ValueError) if it
        breaks the nick rule. The nick is kept for the next start."""
        nick = check_nick(nick)
        self._runtime.call_soon(self._set_nick, nick)
        return nick

    def _set_nick(self, nick: str) -> None:
        self.nick = nick
        self._save_nick()
        for session in self._running.sessions:
            session.set_nick(nick)
        for ext in self.extensions:
            ext.set_nick(nick)

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
        changed = self.store.set_ignored(peer["id"], on)
        self._running.delivery.ignored = frozenset(self.store.ignored())  # replaced whole
        return peer, changed

    def ignored(self) -> list[dict[str, Any]]:
        """The peers on /ignore (known ones with their nick; others by id)."""
        out = []
        for peer_id in sorted(self._running.delivery.ignored):
            try:
                out.append(self.resolve(peer_id))
            except LookupError:
                out.append({"id": peer_id, "nick": peer_id[:12]})
        return out

    def forget(self, ref: str) -> dict[str, Any]:
        """Drop a peer: its pins, its queued messages, its session and its list entry."""
        peer = self.resolve(ref)
        self.call(self._forget, peer["id"])
        return peer

    def _forget(self, peer_id: str) -> None:
        parts = self._running
        parts.presence.forget(peer_id)
        parts.delivery.forget(peer_id)
        session = parts.sessions.drop(peer_id)
        if session is not None:
            session.close("forgotten")

    def probe_port(self, ip: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """True if this node's chat port takes TCP connections on `ip` (for doctor). The
        node knows the probe for its own and neither handshakes nor reports it."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.bind((ip, 0))
            except OSError:
                return False
            self.call(self._running.dialer.expect_probe, sock.getsockname()[:2])
            try:
                sock.connect((ip, self.port))
            except OSError:
                return False
        return True

    def keeps_peer(self, peer_id: str) -> bool:
        """True for a peer the table must not forget: known from a session or queued for."""
        return self.call(self._running.presence.keeps, peer_id)

    def stats(self) -> dict[str, Any]:
        """Counters and per-session figures, for doctor and tests."""
        def collect() -> dict[str, Any]:
            parts = self._running
            return {"counters": dict(self.counters),
                    "outbox": dict(parts.delivery.outbox_count),
                    "sessions": [{"peer": s.peer_id, "nick": s.peer_nick, "server": s.server,
                                  "address": s.address, "state": s.state.value,
                                  "kind": s.kind}
                                 for s in parts.sessions.every()],
                    "extensions": {type(e).__name__: e.stats() for e in self.extensions},
                    "limits": parts.guard.stats(),
                    "nicks_replaced": replaced_nicks()}
        return self.call(collect)

    # -- the session owner (loop thread) --------------------------------------------------

    def _dial(self, key: str, *, kick: bool = True) -> None:
        """Reach a peer: a lanchat node by the dialer, a foreign one by its kind."""
        if self._parts is None or self._closing:
            return
        kind = self._kind_of(key)
        if kind is not None:
            kind.dial(key)
        else:
            self._parts.dialer.ensure(key, kick=kick)

    def _kind_of(self, peer_id: str) -> PeerKind | None:
        """The extension of a foreign peer's kind, None for a lanchat node."""
        peer = self.table.get(peer_id)
        if peer is None or peer.kind == "lanchat":
            return None
        for ext in self.extensions:
            if isinstance(ext, PeerKind) and ext.kind == peer.kind:
                return ext
        return None

    def check_server(self, session: PeerSession, peer_id: str) -> str | None:
        """Refuse a server whose key is not the one expected or pinned."""
        if peer_id == self.node_id:
            return "connected to itself"
        expected = session.expected_id
        if expected and peer_id != expected and not peer_id.startswith(expected):
            self.runtime.count("key_mismatch")
            self.warnings.warn(
                f"key_mismatch:{session.address}", "error", code="key_mismatch",
                message=(f"{session.address} showed key {fingerprint(peer_id)} but "
                         f"{fingerprint(expected)} is pinned for it; refused. If the "
                         "peer really has a new key, /forget it and connect again."),
                address=session.address, expected=expected, got=peer_id)
            return "key does not match the pinned id"
        return None

    def check_client(self, session: PeerSession, peer_id: str) -> str | None:
        """Refuse ourselves; bound the keys one address may bring and the peer table."""
        if peer_id == self.node_id:
            return "connected to itself"
        parts = self._running
        if parts.presence.table.get(peer_id) is not None or parts.presence.trust_of(peer_id):
            return None
        limits = parts.guard.limits
        if not parts.guard.new_identity(session.address, time.time()):
            self.runtime.count("new_identities_refused")
            return (f"too many new keys from {session.address} (more than "
                    f"{limits.new_ids_per_address_per_min:g} a minute); try again later")
        if len(parts.presence.table) >= limits.max_peers and \
                parts.presence.prune(int(limits.max_peers) - 1) == 0:
            self.runtime.count("peer_table_full")
            return "this node knows too many peers to take a new one now; try again later"
        return None

    def _exchanged(self, peer_id: str) -> None:
        """A message or a file went either way: from now on the peer is kept across
        restarts (one store write per peer per run)."""
        if peer_id not in self._talked:
            self._talked.add(peer_id)
            peer = self._running.presence.table.get(peer_id)
            if peer is not None and peer.kind == "lanchat":  # others: their own discovery
                self._running.presence.remember(peer_id, exchanged=True)

    def session_ready(self, session: PeerSession) -> None:
        """Keep one session per peer, mark it online and send what waits for it."""
        parts = self._running
        pid = session.peer_id
        parts.dialer.pin_static(session.dial_key, pid)
        if not parts.sessions.claim(session):
            return
        self.warnings.resolve(*(f"{code}:{session.address}"
                                for code in ("refused", "session_refused", "key_mismatch")))
        parts.presence.seen(pid, "session", time.time(), nick=session.peer_nick,
                            address=session.address, port=session.peer_port, verified=True)
        if session.kind == "lanchat" and parts.presence.trust_of(pid) is not None:
            parts.presence.remember(pid)  # known: refresh its nick and addresses
        parts.presence.prune(int(parts.guard.limits.max_peers))
        parts.delivery.session_ready(session)
        for watcher in self._session_watchers:
            watcher(session)

    def session_chats(self, session: PeerSession, chats: list[Message]) -> None:
        """Queue received messages for the next group commit; what a stranger sends over
        its budget (or anything while the store is full) is answered with slow_down and
        stays in the sender's outbox."""
        parts = self._running
        verdict = parts.guard.chats(session.peer_id, chats, time.time())
        if verdict.accepted:
            parts.delivery.session_chats(session, chats if verdict.accepted == len(chats)
                                         else chats[verdict.start:
                                                    verdict.start + verdict.accepted])
        if verdict.accepted == len(chats):
            return
        self.runtime.count("chats_deferred", len(chats) - verdict.accepted)
        if verdict.close:
            self.runtime.count("slow_down_ignored")
            session.fail("sent on after slow_down")
        elif verdict.retry_after is not None and Capability.CONTROL in session.capabilities:
            session.send(SlowDown(round(verdict.retry_after, 3), verdict.reason))
        if verdict.reason == "the store is full":
            self.warnings.warn("store_full", "error", code="store_full",
                               message=store_full_message(parts.guard.limits))

    def session_acks(self, session: PeerSession, ids: tuple[str, ...]) -> None:
        """The peer stored these messages."""
        self._running.delivery.session_acks(session, ids)

    def session_writable(self, session: PeerSession) -> None:
        """The peer caught up: send more."""
        self._running.delivery.pump(session)

    def session_message(self, session: PeerSession, message: Message) -> None:
        """Nick changes here; anything else to the extensions in order."""
        if isinstance(message, NickChange):
            self._running.presence.seen(session.peer_id, "session", time.time(),
                                        nick=message.nick)
            return
        if isinstance(message, SlowDown):
            self._slowed(session, message)
            return
        if isinstance(message, FileOffer) and not self._running.guard.offer(
                session.peer_id, time.time()):
            self.runtime.count("offers_refused")
            session.send(FileAnswer(message.transfer, False, reason=(
                "slow down: too many file offers from a stranger; offer again in a minute")))
            return
        if isinstance(message, FileOffer | FileAnswer):
            self._exchanged(session.peer_id)
        if Capability.CONTROL in session.capabilities:
            for ext in self.extensions:
                if ext.on_message(session, message):
                    return
        self.runtime.count("unhandled_messages")

    def _slowed(self, session: PeerSession, message: SlowDown) -> None:
        """The peer stores no more for now: our messages wait and go again later."""
        self._running.delivery.hold(session, max(message.retry_after, MIN_SLOW_DOWN_S))
        peer = self._running.presence.table.get(session.peer_id)
        name = peer.nick if peer is not None else session.peer_id[:8]
        self.warnings.warn(
            f"slow_down:{session.peer_id}", "warning", code="slow_down", peer=session.peer_id,
            message=(f"{name} asks us to slow down ({message.reason or 'no reason given'}); "
                     f"our messages wait in the outbox and go again in "
                     f"{message.retry_after:.0f} s. Ask {name} to /verify or /trust you "
                     "if you send a lot."))

    def session_closed(self, session: PeerSession, reason: CloseReason, detail: str) -> None:
        """Forget the session; mark the peer offline if nothing else shows it."""
        parts = self._running
        parts.delivery.session_closed(session)
        if parts.sessions.release(session):
            if not self._closing:
                parts.presence.lost(session.peer_id, "session",
                                    reason.value if reason is not CloseReason.LOCAL else "bye",
                                    time.time())
                if parts.dialer.wants(session.peer_id):
                    self._dial(session.peer_id, kick=False)
        elif reason is CloseReason.ERROR:
            code = "refused" if detail.startswith("refused by peer") else "session_refused"
            parts.dialer.report(code, session.address, detail)
