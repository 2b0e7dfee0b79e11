"""How a node reaches peers and lets them in: the listener, TLS upgrade, dial loops.

A mixin of `Node` (lanchat/node.py); everything here runs on the node's loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from lanchat.config import DEFAULT_PORT, Config
from lanchat.errors import NodeError
from lanchat.identity import Identity
from lanchat.peers import PeerTable
from lanchat.session import Session, SessionOwner
from lanchat.store import Store
from lanchat.text import safe_line

log = logging.getLogger("lanchat.node")

CONNECT_TIMEOUT_S = 3.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
STABLE_SESSION_S = 2.0  # a session that lasted less does not reset the dial backoff
MAX_PENDING_HANDSHAKES = 256
REPORT_EVERY_S = 1.0


@dataclass(frozen=True)
class StaticTarget:
    """A peer typed by address (`--peer [ID@]HOST[:PORT]`)."""

    host: str
    port: int
    expected_id: str | None = None

    @property
    def key(self) -> str:
        """Pin and dialer key."""
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> StaticTarget:
        """Parse `[ID@]HOST[:PORT]`; raise ValueError with a usable message."""
        expected = None
        if "@" in text:
            expected, text = text.split("@", 1)
            expected = expected.strip().lower() or None
        host, port = text, DEFAULT_PORT
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, p = text.partition(":")
            try:
                port = int(p)
            except ValueError:
                raise ValueError(f"bad port in --peer {text!r}") from None
        if not host or not 0 < port < 65536:
            raise ValueError(f"--peer takes HOST[:PORT], not {text!r}")
        return cls(host, port, expected)


def parse_targets(texts: Sequence[str]) -> list[StaticTarget]:
    """Parse every `--peer` value; raise ValueError on the first bad one."""
    return [StaticTarget.parse(t) for t in texts]


def ssl_error() -> type[Exception]:
    """The ssl module's error type (imported lazily for start-up time)."""
    import ssl

    return ssl.SSLError


class _Acceptor(asyncio.Protocol):
    """Holds a fresh TCP connection until TLS takes over."""

    def __init__(self, node: Dialing) -> None:
        self.node = node

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.node._accepted(transport)


class Dialing:
    """Listener and dialers of a Node (a mixin: the attributes are the Node's)."""

    config: Config
    identity: Identity | None
    store: Store | None
    port: int
    addresses: list[str]
    nick: str
    instance: str
    _loop: asyncio.AbstractEventLoop
    _servers: list[asyncio.AbstractServer]
    _sessions: dict[str, Session]
    _all_sessions: set[Session]
    _pending_handshakes: int
    _dialers: dict[str, asyncio.Task[None]]
    _kicks: dict[str, asyncio.Event]
    _statics: dict[str, StaticTarget]
    _outbox_count: dict[str, int]
    _control: dict[str, list[Any]]
    _closing: bool
    _server_ctx: Any
    _client_ctx: Any
    _liveness: tuple[float, float]
    _reported: dict[str, float]

    @property
    def _owner(self) -> SessionOwner:
        """This node as its sessions see it (Node implements SessionOwner)."""
        return cast("SessionOwner", self)

    @property
    def _table(self) -> PeerTable:
        raise NotImplementedError

    def _count(self, key: str, n: int = 1) -> None:
        raise NotImplementedError

    def emit(self, name: str, /, **fields: Any) -> None:
        raise NotImplementedError

    async def _listen(self) -> None:
        hosts = list(self.config.interfaces) or ["0.0.0.0"]
        port = self.config.port
        try:
            await self._bind(hosts, port)
        except OSError as exc:
            if port != DEFAULT_PORT:
                raise NodeError(
                    f"cannot listen on port {port}: {exc.strerror}; choose another with "
                    "--port, or --port 0 for any free port") from None
            log.info("port %d busy, taking a free one", port)
            await self._bind(hosts, 0)
        if not self.addresses:
            self.addresses = [h for h in hosts if h != "0.0.0.0"] or _local_addresses()

    async def _bind(self, hosts: list[str], port: int) -> None:
        for server in self._servers:
            server.close()
        self._servers = []
        for host in hosts:
            server = await self._loop.create_server(
                lambda: _Acceptor(self), host, port, reuse_address=True, backlog=512)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        self.port = port

    def _accepted(self, transport: asyncio.Transport) -> None:
        if self._closing or self._pending_handshakes >= MAX_PENDING_HANDSHAKES:
            self._count("handshakes_shed")
            transport.abort()
            return
        self._pending_handshakes += 1
        self._loop.create_task(self._upgrade(transport))

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        assert self.identity is not None
        session = Session(self._owner, self.identity, self.nick, self.port, server=True,
                          address=str(peer[0]), loop=self._loop, liveness=self._liveness)
        session.instance = self.instance
        try:
            tls = await self._loop.start_tls(transport, session, self._server_ctx,
                                             server_side=True,
                                             ssl_handshake_timeout=CONNECT_TIMEOUT_S)
        except (OSError, ConnectionError, TimeoutError, ssl_error()) as exc:
            self._count("tls_failed")
            log.info("TLS from %s failed: %s", peer[0], safe_line(str(exc)))
            transport.abort()
            reason = "handshake not finished in time" if isinstance(exc, TimeoutError) else (
                f"TLS handshake failed: {exc}")
            self._report("session_refused", str(peer[0]), reason)
            return
        finally:
            self._pending_handshakes -= 1
        if tls is None:
            return
        self._all_sessions.add(session)
        session.connection_made(tls)

    def _ensure_dialer(self, key: str, *, kick: bool = True) -> None:
        """Start a dial loop for `key`; `kick` cuts a running loop's backoff short."""
        event = self._kicks.get(key)
        if event is not None and kick:
            event.set()
        task = self._dialers.get(key)
        if task is not None and not task.done():
            return
        if self._closing:
            return
        self._kicks[key] = asyncio.Event()
        self._dialers[key] = self._loop.create_task(self._dial_loop(key))

    def _wants(self, key: str) -> bool:
        if self._closing:
            return False
        if key in self._statics or self._control.get(key):
            return True
        return self._outbox_count.get(key, 0) > 0

    def _static_peer_id(self, key: str) -> str | None:
        target = self._statics.get(key)
        if target is None:
            return key
        assert self.store is not None
        return self.store.pinned(key) or target.expected_id

    async def _dial_loop(self, key: str) -> None:
        """Keep a session to `key` while one is wanted; back off while none lasts."""
        backoff = BACKOFF_MIN_S
        kick = self._kicks[key]
        try:
            while self._wants(key):
                kick.clear()
                peer_id = self._static_peer_id(key)
                live = self._sessions.get(peer_id) if peer_id else None
                if live is None:
                    live = await self._dial_once(key)
                if live is not None:
                    began = self._loop.time()
                    await asyncio.shield(live.closed)
                    if self._loop.time() - began >= STABLE_SESSION_S:
                        backoff = BACKOFF_MIN_S
                        continue
                try:
                    await asyncio.wait_for(kick.wait(), backoff * random.uniform(0.8, 1.2))
                    backoff = BACKOFF_MIN_S
                except TimeoutError:
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            if self._dialers.get(key) is asyncio.current_task():
                del self._dialers[key]
                self._kicks.pop(key, None)

    def _dial_targets(self, key: str) -> list[tuple[str, int, str | None]]:
        target = self._statics.get(key)
        if target is not None:
            return [(target.host, target.port, self._static_peer_id(key))]
        return [(addr, port, key) for addr, port in self._table.dial_order(key)]

    async def _dial_once(self, key: str) -> Session | None:
        for host, port, expected in self._dial_targets(key):
            if self._closing:
                return None
            if expected and expected in self._sessions:
                return self._sessions[expected]
            session = await self._connect(host, port, expected, key)
            if session is not None:
                return session
        return None

    async def _connect(self, host: str, port: int, expected: str | None,
                       key: str) -> Session | None:
        assert self.identity is not None
        session = Session(self._owner, self.identity, self.nick, self.port, server=False,
                          address=host, expected_id=expected, loop=self._loop,
                          liveness=self._liveness)
        session.dial_key = key
        session.instance = self.instance
        session.peer_port = port
        session.on_ready = self._loop.create_future()
        try:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: session, host, port,
                                             ssl=self._client_ctx, server_hostname=None,
                                             ssl_handshake_timeout=CONNECT_TIMEOUT_S),
                CONNECT_TIMEOUT_S + 1)
        except (OSError, TimeoutError, ConnectionError, ssl_error()) as exc:
            self._count("dial_failed")
            log.info("connect %s:%d failed: %s", safe_line(host), port, safe_line(str(exc)))
            return None
        self._all_sessions.add(session)
        await asyncio.wait([session.on_ready, session.closed], timeout=CONNECT_TIMEOUT_S * 2,
                           return_when=asyncio.FIRST_COMPLETED)
        if not session.ready:
            session.abort()
            return None
        return session

    def _report(self, code: str, address: str, reason: str) -> None:
        """An `error` event for a refused connection, at most one per address per second."""
        now = self._loop.time()
        if now - self._reported.get(address, -REPORT_EVERY_S) < REPORT_EVERY_S:
            self._count("reports_suppressed")
            return
        if len(self._reported) > 1024:
            self._reported.clear()
        self._reported[address] = now
        self.emit("error", code=code, address=address,
                  message=f"connection from {address} refused: {reason}")


def _local_addresses() -> list[str]:
    try:
        from lanchat.discovery.interfaces import usable_interfaces

        return [i.ip for i in usable_interfaces()]
    except Exception:  # noqa: BLE001 - best effort for the `ready` event
        return [socket.gethostbyname(socket.gethostname())]
