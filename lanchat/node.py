"""The Node: the one public API over sessions, store, peer table and discovery.

One background thread runs an asyncio loop that owns every socket and timer; a second
thread delivers events to listeners in order. Public methods are thread-safe and return
at once; outcomes arrive as events.

Extensions (discovery, file transfer) are objects in `node.extensions`, added before
`start()`. Each may define, all called on the loop thread:
`async start(node)`, `async stop()`, `on_message(session, message) -> bool` (True when it
handled a control message), `set_nick(nick)`, `stats() -> dict`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from lanchat.config import Config
from lanchat.delivery import (  # noqa: F401 - re-exported: the node's public names
    EVENTS_HIGH_WATER,
    EVENTS_LOW_WATER,
    Delivery,
    check_text,
    new_message_id,
)
from lanchat.dialing import Dialing, StaticTarget, parse_targets  # noqa: F401 - re-exported
from lanchat.errors import NodeError
from lanchat.events import Event
from lanchat.identity import Identity, fingerprint, safety_code
from lanchat.peers import Change, Peer, PeerTable
from lanchat.protocol import Chat, Message, NickChange, ProtocolError, check_nick
from lanchat.session import CloseReason, Session, client_context, server_context
from lanchat.store import Store, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_TIMEOUT_S = 10.0
CLOSE_GRACE_S = 1.0
LOCK_FILE = "lock"
TRUST_LEVELS = ("tofu", "verified", "trusted")





class Node(Dialing, Delivery):
    """A lanchat node. Use as a context manager, or call start() and close().

    Reaching peers is in `Dialing` (lanchat/dialing.py); messages in `Delivery`
    (lanchat/delivery.py); sessions report here (the session owner)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.nick = check_nick(config.nick)
        self.identity: Identity | None = None
        self.store: Store | None = None
        self.table: PeerTable | None = None
        self.port = 0
        self.addresses: list[str] = []
        self.counters: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="lanchat-net", daemon=True)
        self._events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._event_thread = threading.Thread(target=self._run_events, name="lanchat-events",
                                              daemon=True)
        self._listeners: list[Callable[[Event], None]] = []
        self._idle: list[Callable[[], None]] = []
        self._lock_fd: int | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._sessions: dict[str, Session] = {}
        self._all_sessions: set[Session] = set()
        self._pending_handshakes = 0
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._kicks: dict[str, asyncio.Event] = {}
        self._statics: dict[str, StaticTarget] = {}
        self._outbox_count: dict[str, int] = {}
        self._in: list[tuple[Session, list[Chat]]] = []
        self._out: list[tuple[list[str], Chat, bytes]] = []
        self._acks: list[tuple[str, tuple[str, ...]]] = []
        self._control: dict[str, list[Message]] = {}
        self._submit_lock = threading.Lock()
        self._submitted: list[tuple[list[str], Chat, bytes]] = []
        self._wake_pending = False
        self._reported: dict[str, float] = {}
        self._throttled: set[Session] = set()
        self._throttling = False
        self._flush_scheduled = False
        self._started = False
        self._closing = False
        self._closed = False
        self._client_ctx = client_context()
        self._server_ctx: Any = None
        self.extensions: list[Any] = []
        self._liveness = (config.heartbeat_s, config.dead_after_s)
        self.instance = secrets.token_hex(8)

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def node_id(self) -> str:
        """This node's id."""
        assert self.identity is not None
        return self.identity.node_id

    def start(self) -> None:
        """Open the home, listen, dial static peers and start discovery; emit `ready`."""
        home = self.config.home
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create home {home}: {exc}") from None
        self._take_lock(home)
        try:
            self.identity = Identity.load_or_create(home)
            self.store = Store(home / "lanchat.db")
            for text in self.config.peers:
                target = StaticTarget.parse(text)
                self._statics[target.key] = target
        except (StoreError, ValueError, OSError) as exc:
            self._release_lock()
            raise NodeError(str(exc)) from None
        except Exception:
            self._release_lock()
            raise
        self._server_ctx = server_context(self.identity)
        self.table = PeerTable(self.identity.node_id)
        now = time.time()
        for known in self.store.known_peers():
            self.table.remember(known.id, known.nick, known.host, list(known.addresses),
                                known.port, now)
        self._outbox_count = self.store.outbox_peers()
        self._thread.start()
        self._event_thread.start()
        try:
            self._submit(self._async_start()).result(CALL_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        self._started = True

    def close(self) -> None:
        """Say bye to every peer, stop the threads and close the store; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                self._submit(self._async_close()).result(CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - closing must go on
                log.warning("close: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
        if self._event_thread.is_alive():
            self._events.put(None)
            if threading.current_thread() is not self._event_thread:
                self._event_thread.join(CALL_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
        if self.store is not None:
            self.store.close()
        self._release_lock()

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

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._loop_exception)
        self._loop.run_forever()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        exc = ctx.get("exception")
        self._count("loop_errors")
        if isinstance(exc, ConnectionError | TimeoutError | OSError):
            log.info("network: %s", ctx.get("message"))
        else:
            log.error("loop error: %s", ctx.get("message"), exc_info=exc)

    def _run_events(self) -> None:
        closing = False
        while True:
            if closing:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    return
            else:
                event = self._events.get()
            if event is None:
                closing = True
                continue
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - a listener never stops the others
                    log.exception("event listener failed on %s", event.name)
            if self._throttling and self._events.qsize() < EVENTS_LOW_WATER:
                self._throttling = False
                if not self._closed:
                    self._loop.call_soon_threadsafe(self._unthrottle)
            if self._events.empty():
                for idle in list(self._idle):
                    try:
                        idle()
                    except Exception:  # noqa: BLE001
                        log.exception("idle hook failed")

    def _submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the loop thread and return its result (for table reads)."""
        if threading.current_thread() is self._thread:
            return fn(*args)

        async def run() -> T:
            return fn(*args)

        result: T = self._submit(run()).result(CALL_TIMEOUT_S)
        return result

    # -- listeners ---------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for every event, on the event thread, in order."""
        self._listeners.append(listener)

    def on_idle(self, hook: Callable[[], None]) -> None:
        """Call `hook()` on the event thread whenever the event queue runs empty."""
        self._idle.append(hook)

    def emit(self, name: str, /, **fields: Any) -> None:
        """Queue an event for the listeners (any thread)."""
        self._events.put(Event.make(name, **fields))

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # -- public API (any thread) ---------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Own id, nick, fingerprint, port and addresses."""
        return {"id": self.node_id, "nick": self.nick, "port": self.port,
                "addresses": list(self.addresses),
                "fingerprint": fingerprint(self.node_id)}

    def peers(self) -> list[dict[str, Any]]:
        """Snapshot of the peer table, by list number."""
        with self._table.lock:
            return [self._peer_view(p) for p in self._table.all()]

    def resolve(self, ref: str) -> dict[str, Any]:
        """Find a peer by nick, number, id or id prefix; raise LookupError if none."""
        with self._table.lock:
            return self._peer_view(self._table.resolve(ref))

    def send(self, ref: str, text: str) -> str:
        """Queue a direct message; return its id. Raises LookupError, ValueError."""
        check_text(text)
        table = self._table
        peer_id = ref if table.get(ref) is not None else table.resolve(ref).id
        return self._queue([peer_id], text, broadcast=False)

    def broadcast(self, text: str) -> tuple[str, list[str]]:
        """Queue a message to every known peer; return its id and the peer ids."""
        check_text(text)
        targets = [p.id for p in self._table.all()]
        if not targets:
            return "", []
        return self._queue(targets, text, broadcast=True), targets

    def send_control(self, peer_id: str, message: Message) -> None:
        """Send a control message to a peer (thread-safe); it waits in memory, not in the
        store, until a session to the peer is up."""
        self._loop.call_soon_threadsafe(self._send_control, peer_id, message)

    def _send_control(self, peer_id: str, message: Message) -> None:
        session = self._sessions.get(peer_id)
        if session is not None:
            session.send(message)
            return
        self._control.setdefault(peer_id, []).append(message)
        self._ensure_dialer(peer_id)

    def set_nick(self, nick: str) -> None:
        """Change this node's nick and tell every peer."""
        try:
            check_nick(nick)
        except ProtocolError as exc:
            raise ValueError(exc.reason) from None
        self._loop.call_soon_threadsafe(self._set_nick, nick)

    def history(self, ref: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Stored messages, oldest first, with one peer or all."""
        assert self.store is not None
        peer_id = self.resolve(ref)["id"] if ref else None
        rows = self.store.history(peer_id, limit)
        names = {p["id"]: p["nick"] for p in self.peers()}
        return [{"id": r.id, "peer": r.peer, "nick": r.nick if r.direction == "in" else
                 self.nick, "with": names.get(r.peer, r.peer), "direction": r.direction,
                 "to": "broadcast" if r.broadcast else "direct", "text": r.text, "ts": r.ts}
                for r in rows]

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Stored messages matching every word of `query`, oldest first."""
        assert self.store is not None
        names = {p["id"]: p["nick"] for p in self.peers()}
        return [{"id": r.id, "peer": r.peer, "nick": r.nick if r.direction == "in" else
                 self.nick, "with": names.get(r.peer, r.peer), "direction": r.direction,
                 "text": r.text, "ts": r.ts} for r in self.store.search(query, limit)]

    def safety_code(self, ref: str) -> tuple[dict[str, Any], str]:
        """The peer and the code both sides read aloud to check their keys."""
        peer = self.resolve(ref)
        return peer, safety_code(self.node_id, peer["id"])

    def set_trust(self, ref: str, trust: str) -> dict[str, Any]:
        """Mark a peer 'verified', 'trusted' or back to 'tofu'; return the peer."""
        assert self.store is not None
        if trust not in TRUST_LEVELS:
            raise ValueError(f"trust is one of {', '.join(TRUST_LEVELS)}")
        peer = self.resolve(ref)
        if not self.store.set_trust(peer["id"], trust):
            self.store.remember_peer(peer["id"], peer["nick"], peer["host"],
                                     peer["addresses"], peer["port"])
            self.store.set_trust(peer["id"], trust)
        return self.resolve(peer["id"])

    def forget(self, ref: str) -> dict[str, Any]:
        """Drop a peer: its pins, its queued messages, its session and its list entry."""
        peer = self.resolve(ref)
        self.call(self._forget, peer["id"])
        return peer

    def _forget(self, peer_id: str) -> None:
        assert self.store is not None
        self.store.forget_peer(peer_id)
        self._outbox_count.pop(peer_id, None)
        self._control.pop(peer_id, None)
        session = self._sessions.pop(peer_id, None)
        if session is not None:
            session.close("forgotten")
        self._table.forget(peer_id)

    def stats(self) -> dict[str, Any]:
        """Counters and per-session figures, for doctor and tests."""
        def collect() -> dict[str, Any]:
            return {"counters": dict(self.counters),
                    "outbox": dict(self._outbox_count),
                    "sessions": [{"peer": s.peer_id, "nick": s.peer_nick, "server": s.server,
                                  "address": s.address, "state": s.state.value}
                                 for s in self._all_sessions],
                    "extensions": {type(e).__name__: e.stats() for e in self.extensions
                                   if hasattr(e, "stats")}}
        return self.call(collect)

    # -- loop side ---------------------------------------------------------------------

    @property
    def _table(self) -> PeerTable:
        assert self.table is not None
        return self.table

    def _peer_view(self, peer: Peer) -> dict[str, Any]:
        view = peer.public()
        view["connected"] = peer.id in self._sessions
        view["queued"] = self._outbox_count.get(peer.id, 0)
        view["first_seen"] = peer.first_seen
        view["last_seen"] = peer.last_seen
        view["left_reason"] = peer.left_reason
        assert self.store is not None
        view["trust"] = self.store.trust_of(peer.id) or "new"
        return view

    async def _async_start(self) -> None:
        await self._listen()
        for target in self._statics.values():
            self._ensure_dialer(target.key)
        for peer_id, n in self._outbox_count.items():
            if n:
                self._ensure_dialer(peer_id)
        for ext in self.extensions:
            await ext.start(self)
        self.emit("ready", id=self.node_id, nick=self.nick, port=self.port,
                  addresses=list(self.addresses), fingerprint=fingerprint(self.node_id))

    # -- session owner ------------------------------------------------------------------

    def check_server(self, session: Session, peer_id: str) -> str | None:
        """Refuse a server whose key is not the one expected or pinned."""
        if peer_id == self.node_id:
            return "connected to itself"
        expected = session.expected_id
        if expected and peer_id != expected and not peer_id.startswith(expected):
            self._count("key_mismatch")
            self.emit("error", code="key_mismatch",
                      message=(f"{session.address} showed key {fingerprint(peer_id)} but "
                               f"{fingerprint(expected)} is pinned for it; refused. If the "
                               "peer really has a new key, /forget it and connect again."),
                      address=session.address, expected=expected, got=peer_id)
            return "key does not match the pinned id"
        return None

    def check_client(self, session: Session, peer_id: str) -> str | None:
        """Refuse ourselves and blocked peers."""
        if peer_id == self.node_id:
            return "connected to itself"
        return None

    def session_ready(self, session: Session) -> None:
        """Keep one session per peer, mark it online and send what waits for it."""
        pid = session.peer_id
        key = session.dial_key
        assert self.store is not None
        if key is not None and key in self._statics:
            try:
                if self.store.pinned(key) is None:
                    self.store.pin(key, pid)
            except sqlite3.Error as exc:
                log.warning("could not pin %s: %s", key, exc)
        existing = self._sessions.get(pid)
        if existing is not None and existing is not session:
            if self._keep_new(existing, session):
                self._sessions[pid] = session
                existing.close("duplicate")
            else:
                session.close("duplicate")
                return
        self._sessions[pid] = session
        change = self._table.seen(pid, "session", time.time(), nick=session.peer_nick,
                                  address=session.address, port=session.peer_port,
                                  verified=True)
        peer = self._table.get(pid)
        assert peer is not None
        try:
            self.store.remember_peer(pid, peer.nick, peer.host, peer.addresses, peer.port)
        except sqlite3.Error as exc:
            log.warning("could not remember peer %s: %s", pid[:16], exc)
        self._announce(change)
        for message in self._control.pop(pid, []):
            session.send(message)
        self._pump(session)

    def _keep_new(self, old: Session, new: Session) -> bool:
        def initiator(s: Session) -> str:
            return s.peer_id if s.server else self.node_id
        if old.peer_instance != new.peer_instance or initiator(old) == initiator(new):
            return True  # the peer restarted (the old session is stale), or redialled
        return initiator(new) == min(self.node_id, new.peer_id)

    def session_message(self, session: Session, message: Message) -> None:
        """Nick changes and, later, file control."""
        if isinstance(message, NickChange):
            change = self._table.seen(session.peer_id, "session", time.time(),
                                      nick=message.nick)
            self._announce(change)
            return
        for ext in self.extensions:
            handler = getattr(ext, "on_message", None)
            if handler is not None and handler(session, message):
                return
        self._count("unhandled_messages")

    def session_closed(self, session: Session, reason: CloseReason, detail: str) -> None:
        """Forget the session; mark the peer offline if nothing else shows it."""
        self._all_sessions.discard(session)
        self._throttled.discard(session)
        pid = session.peer_id
        if pid and self._sessions.get(pid) is session:
            del self._sessions[pid]
            if not self._closing:
                change = self._table.lost(pid, "session", reason.value
                                          if reason is not CloseReason.LOCAL else "bye",
                                          time.time())
                self._announce(change)
                if self._wants(pid):
                    self._ensure_dialer(pid, kick=False)
        elif reason is CloseReason.ERROR:
            code = "refused" if detail.startswith("refused by peer") else "session_refused"
            self._report(code, session.address, detail)

    def keeps_peer(self, peer_id: str) -> bool:
        """True for a peer the table must not forget: known from a session or queued for."""
        assert self.store is not None
        return bool(self._outbox_count.get(peer_id)) or self.store.trust_of(peer_id) is not None

    def _announce(self, change: Change | None) -> None:
        if change is None:
            return
        view = self._peer_view(change.peer)
        if change.kind == "joined":
            self.emit("peer_joined", peer=view)
            if self._outbox_count.get(change.peer.id):
                self._ensure_dialer(change.peer.id)
        elif change.kind == "left":
            self.emit("peer_left", peer=view, reason=change.reason)
        else:
            self.emit("peer_updated", peer=view)

    def _set_nick(self, nick: str) -> None:
        self.nick = nick
        for session in self._sessions.values():
            session.nick = nick
            session.send(NickChange(nick))
        for ext in self.extensions:
            if hasattr(ext, "set_nick"):
                ext.set_nick(nick)

    # -- messages: group commit -------------------------------------------------------

    async def _async_close(self) -> None:
        self._closing = True
        dialers = list(self._dialers.values())
        for task in dialers:
            task.cancel()
        await asyncio.gather(*dialers, return_exceptions=True)
        self._flush()
        for server in self._servers:
            server.close()
        # Extensions stop side by side: discovery's goodbye must not wait for a slower
        # extension (a file server joining its threads).
        results = await asyncio.gather(*(ext.stop() for ext in self.extensions),
                                       return_exceptions=True)
        for ext, result in zip(self.extensions, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("stopping %s: %s", type(ext).__name__, result)
        sessions = list(self._all_sessions)
        for session in sessions:
            session.close("quit")
        waits = [s.closed for s in sessions if not s.closed.done()]
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_GRACE_S)
        for session in sessions:
            session.abort()
