"""The running node's parts, their start and close, and the session owner between them.

`Core` exists only while a node runs (`Node.start` makes it): it builds the store,
`SessionRegistry`, `Delivery`, `Presence`, `Dialer` and `Guard`, and implements
`api.SessionOwner`, routing what each session reports to the part that owns that state.
Everything here runs on the loop thread, but for what `Node.send`, `broadcast` and `ignore`
ask on the caller's thread (`check_room`, `chat_peer`, `everyone`, `ignore`: each says so).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from lanchat.api import (
    Capability,
    CloseReason,
    DurableHandler,
    Extension,
    NodeHost,
    PeerKind,
    PeerSession,
    RuntimeApi,
)
from lanchat.config import Config
from lanchat.delivery import Delivery
from lanchat.dialing import Dialer
from lanchat.identity import Identity, fingerprint
from lanchat.limits import MIN_SLOW_DOWN_S, Guard, Limits, store_full_message
from lanchat.naming import AmbiguousName
from lanchat.nicks import placeholder, replaced_nicks
from lanchat.notices import Warnings
from lanchat.presence import Presence
from lanchat.protocol import Chat, FileAnswer, FileOffer, Message, NickChange, SlowDown
from lanchat.runtime import Runtime
from lanchat.sessions import SessionRegistry
from lanchat.store import DB_FILE, Store

log = logging.getLogger("lanchat.node")

CLOSE_GRACE_S = 1.0  # how long sessions get to say bye at close
EXTENSION_STOP_S = 5.0  # how long one extension gets to stop (close waits CALL_TIMEOUT_S)
CHAT_KINDS = ("lanchat", "xmpp")  # peer kinds that take chat messages


class Core:
    """The parts of a running node, and the `api.SessionOwner` that routes between them."""

    def __init__(self, config: Config, runtime: Runtime, warnings: Warnings, *,
                 nick: Callable[[], str], instance: str,
                 extensions: Sequence[Extension],
                 watchers: Sequence[Callable[[PeerSession], None]]) -> None:
        self.runtime: RuntimeApi = runtime
        self.warnings = warnings
        self.extensions = extensions  # the node's list: extensions added later count too
        self.closing = False
        self._talked: set[str] = set()  # peers a message or file went to or came from
        self._watchers = watchers  # called each time a session speaks for its peer
        self._kinds: dict[type[Message], DurableHandler] = {}  # durable frames' capabilities
        self.identity = Identity.load_or_create(config.home)
        self.store = Store(config.home / DB_FILE)
        try:
            self.store.peers.forget_silent()
            self.sessions = SessionRegistry(self.identity.node_id, runtime.loop.time)
            self.delivery = Delivery(runtime, self.store, self.sessions, nick, self.dial,
                                     runtime.backlog, runtime.when_drained,
                                     exchanged=self.exchanged)
            self.delivery.ignored = frozenset(self.store.peers.ignored())
            self.delivery.stored_out = self.stored_out
            self.presence = Presence(self.identity.node_id, self.store, runtime,
                                     connected=self.sessions.connected,
                                     queued=self.delivery.queued, dial=self.dial,
                                     warnings=warnings)
            self.dialer = Dialer(config=config, identity=self.identity, runtime=runtime,
                                 sessions=self.sessions, owner=self, store=self.store,
                                 table=self.presence.table, nick=nick, instance=instance,
                                 wanted=self.delivery.wants, warnings=warnings)
        except BaseException:
            self.store.close()
            raise
        self.guard = Guard(Limits.from_env(), trust_of=self.presence.trust_of,
                           stored_today=self.store.bytes_from_since,
                           store_size=self.store.size_bytes)

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.identity.node_id

    # -- start and close --------------------------------------------------------------

    async def start(self, host: NodeHost) -> None:
        """Dial the peers messages wait for and start the extensions (after `listen`)."""
        self.dialer.start(self.delivery.waiting())
        for ext in self.extensions:
            await ext.start(host)

    async def close(self) -> None:
        """Stop dialling, commit, say bye to every peer and stop the extensions."""
        self.closing = True
        await self.dialer.stop()
        self.delivery.flush_all()
        self.dialer.close_listeners()
        # Peers hear bye first: no extension's stop (a probe still under way, threads to
        # join) may keep them from it, nor cut it short when close runs out of time.
        sessions = self.sessions.every()
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

    # -- what the node asks of its parts ------------------------------------------------

    def set_nick(self, nick: str) -> None:
        """Tell every peer and extension our new nick."""
        for session in self.sessions:
            session.set_nick(nick)
        for ext in self.extensions:
            ext.set_nick(nick)

    def add_durable_kind(self, handler: DurableHandler) -> None:
        """Carry a capability's frames like chat messages; it hears what was stored."""
        self.delivery.add_kind(handler)
        for cls in handler.types:
            self._kinds[cls] = handler

    def stored_out(self, out: list[tuple[list[str], Message, bytes]]) -> None:
        """After a commit: one `sent` event per chat message stored in the outbox, whichever
        face, command or plugin queued it (a broadcast: one naming every recipient), so
        every face draws its own lines from it; other frames go to their kind."""
        emit, own = self.runtime.emit, self.node_id
        who: dict[str, dict[str, str]] = {}  # one lookup per peer and commit (a flood)
        kinds: dict[int, tuple[DurableHandler, list[tuple[list[str], Message]]]] = {}
        for peers, msg, _ in out:
            if not isinstance(msg, Chat):
                kind = self._kinds[type(msg)]
                kinds.setdefault(id(kind), (kind, []))[1].append((peers, msg))
                continue
            for peer_id in peers:
                if peer_id not in who:
                    peer = self.presence.table.get(peer_id)
                    who[peer_id] = {"id": peer_id,
                                    "nick": peer.nick if peer else placeholder(peer_id)}
            emit("sent", id=msg.msg_id, **{"from": {"id": own, "nick": msg.nick}},
                 to="broadcast" if msg.broadcast else "direct", room=None,
                 recipients=[who[p] for p in peers], text=msg.text, sent=msg.ts)
        for kind, items in kinds.values():
            kind.stored_out(items)

    def check_room(self) -> None:
        """Raise ValueError while the store is at its size bound (any thread)."""
        if self.guard.store_full(time.time()):
            raise ValueError(store_full_message(self.guard.limits))

    def chat_peer(self, ref: str) -> str:
        """The id of the peer `ref` names if it takes chat (any thread, as `Node.send`);
        raise LookupError (AmbiguousName listing the candidates) or ValueError."""
        table = self.presence.table
        peer = table.get(ref)
        if peer is None:
            try:
                peer = table.resolve(ref)
            except AmbiguousName:
                self.runtime.call(self.presence.resolve, ref)  # raises, listing trust too
                raise
        if peer.kind not in CHAT_KINDS:
            raise ValueError(f"{peer.nick} is a LocalSend device: it takes files (/file), "
                             "not messages")
        return peer.id

    def everyone(self) -> list[str]:
        """Who a broadcast goes to: every lanchat node; a Bonjour chat peer (unencrypted)
        gets direct messages only, a LocalSend device no chat at all (any thread)."""
        return [p.id for p in self.presence.table.all() if p.kind == "lanchat"]

    def ignored(self) -> list[dict[str, Any]]:
        """The peers on /ignore (known ones with their nick; others by id)."""
        out = []
        for peer_id in sorted(self.delivery.ignored):
            try:
                out.append(self.presence.resolve(peer_id))
            except LookupError:
                out.append({"id": peer_id, "nick": peer_id[:12]})
        return out

    def ignore(self, peer_id: str, on: bool) -> bool:
        """Put a peer on /ignore or take it off; True if that changed anything (any
        thread)."""
        changed = self.store.peers.set_ignored(peer_id, on)
        self.delivery.ignored = frozenset(self.store.peers.ignored())  # replaced whole
        return changed

    def forget(self, peer_id: str) -> None:
        """Drop a peer's list entry, pins, queued messages and session."""
        self.presence.forget(peer_id)
        self.delivery.forget(peer_id)
        session = self.sessions.drop(peer_id)
        if session is not None:
            session.close("forgotten")

    def stats(self) -> dict[str, Any]:
        """Counters and per-session figures."""
        return {"counters": dict(self.runtime.counters),
                "outbox": dict(self.delivery.outbox_count),
                "sessions": [{"peer": s.peer_id, "nick": s.peer_nick, "server": s.server,
                              "address": s.address, "state": s.state.value, "kind": s.kind}
                             for s in self.sessions.every()],
                "extensions": {type(e).__name__: e.stats() for e in self.extensions},
                "limits": self.guard.stats(),
                "nicks_replaced": replaced_nicks()}

    def dial(self, key: str, *, kick: bool = True) -> None:
        """Reach a peer: a lanchat node by the dialer, a foreign one by its kind."""
        if self.closing:
            return
        kind = self._kind_of(key)
        if kind is not None:
            kind.dial(key)
        else:
            self.dialer.ensure(key, kick=kick)

    def _kind_of(self, peer_id: str) -> PeerKind | None:
        """The extension of a foreign peer's kind, None for a lanchat node."""
        peer = self.presence.table.get(peer_id)
        if peer is None or peer.kind == "lanchat":
            return None
        for ext in self.extensions:
            if isinstance(ext, PeerKind) and ext.kind == peer.kind:
                return ext
        return None

    def exchanged(self, peer_id: str) -> None:
        """A message or a file went either way: from now on the peer is kept across
        restarts (one store write per peer per run)."""
        if peer_id not in self._talked:
            self._talked.add(peer_id)
            peer = self.presence.table.get(peer_id)
            if peer is not None and peer.kind == "lanchat":  # others: their own discovery
                self.presence.remember(peer_id, exchanged=True)

    # -- the session owner ----------------------------------------------------------------

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
        if self.presence.table.get(peer_id) is not None or self.presence.trust_of(peer_id):
            return None
        limits = self.guard.limits
        if not self.guard.new_identity(session.address, time.time()):
            self.runtime.count("new_identities_refused")
            return (f"too many new keys from {session.address} (more than "
                    f"{limits.new_ids_per_address_per_min:g} a minute); try again later")
        if len(self.presence.table) >= limits.max_peers and \
                self.presence.prune(int(limits.max_peers) - 1) == 0:
            self.runtime.count("peer_table_full")
            return "this node knows too many peers to take a new one now; try again later"
        return None

    def session_ready(self, session: PeerSession) -> None:
        """Keep one session per peer, mark it online and send what waits for it."""
        pid = session.peer_id
        typed = self.dialer.pin_static(session.dial_key, pid)
        if not self.sessions.claim(session):
            return
        self.warnings.resolve(*(f"{code}:{session.address}"
                                for code in ("refused", "session_refused", "key_mismatch")))
        self.presence.seen(pid, "session", time.time(), nick=session.peer_nick,
                           address=session.address, port=session.peer_port, verified=True)
        if session.kind == "lanchat" and (typed or self.presence.trust_of(pid) is not None):
            # Known: refresh its nick and addresses. Reached at an address the user typed:
            # keep it (its pin spares it at the next start), so its name works at once.
            self.presence.remember(pid)
        self.presence.prune(int(self.guard.limits.max_peers))
        self.delivery.session_ready(session)
        for watcher in self._watchers:
            watcher(session)

    def session_chats(self, session: PeerSession, chats: list[Message]) -> None:
        """Queue received messages for the next group commit; what a stranger sends over
        its budget (or anything while the store is full) is answered with slow_down and
        stays in the sender's outbox."""
        verdict = self.guard.chats(session.peer_id, chats, time.time())
        if verdict.accepted:
            self.delivery.session_chats(session, chats if verdict.accepted == len(chats)
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
                               message=store_full_message(self.guard.limits))

    def session_acks(self, session: PeerSession, ids: tuple[str, ...]) -> None:
        """The peer stored these messages."""
        self.delivery.session_acks(session, ids)

    def session_writable(self, session: PeerSession) -> None:
        """The peer caught up: send more."""
        self.delivery.wire.pump(session)

    def session_message(self, session: PeerSession, message: Message) -> None:
        """Nick changes here; anything else to the extensions in order."""
        if isinstance(message, NickChange):
            self.presence.seen(session.peer_id, "session", time.time(), nick=message.nick)
            return
        if isinstance(message, SlowDown):
            self._slowed(session, message)
            return
        if isinstance(message, FileOffer) and not self.guard.offer(session.peer_id,
                                                                   time.time()):
            self.runtime.count("offers_refused")
            session.send(FileAnswer(message.transfer, False, reason=(
                "slow down: too many file offers from a stranger; offer again in a minute")))
            return
        if isinstance(message, FileOffer | FileAnswer):
            self.exchanged(session.peer_id)
        if Capability.CONTROL in session.capabilities:
            for ext in self.extensions:
                if ext.on_message(session, message):
                    return
        self.runtime.count("unhandled_messages")

    def _slowed(self, session: PeerSession, message: SlowDown) -> None:
        """The peer stores no more for now: our messages wait and go again later."""
        self.delivery.wire.hold(session, max(message.retry_after, MIN_SLOW_DOWN_S))
        peer = self.presence.table.get(session.peer_id)
        name = peer.nick if peer is not None else session.peer_id[:8]
        self.warnings.warn(
            f"slow_down:{session.peer_id}", "warning", code="slow_down", peer=session.peer_id,
            message=(f"{name} asks us to slow down ({message.reason or 'no reason given'}); "
                     f"our messages wait in the outbox and go again in "
                     f"{message.retry_after:.0f} s. Ask {name} to /verify or /trust you "
                     "if you send a lot."))

    def session_closed(self, session: PeerSession, reason: CloseReason, detail: str) -> None:
        """Forget the session; mark the peer offline if nothing else shows it."""
        self.delivery.session_closed(session)
        if self.sessions.release(session):
            if not self.closing:
                self.presence.lost(session.peer_id, "session",
                                   reason.value if reason is not CloseReason.LOCAL else "bye",
                                   time.time())
                if self.dialer.wants(session.peer_id):
                    self.dial(session.peer_id, kick=False)
        elif reason is CloseReason.ERROR:
            code = "refused" if detail.startswith("refused by peer") else "session_refused"
            self.dialer.report(code, session.address, detail)
