"""How a node reaches peers and lets them in: the listener, TLS upgrade, dial loops.

`Dialer` owns the listening sockets, the dial loops and the static targets; sessions it
makes are registered in the node's `SessionRegistry`. Everything runs on the loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import sqlite3
from collections.abc import Callable

from lanchat.api import PeerSession, RuntimeApi, SessionOwner
from lanchat.config import DEFAULT_PORT, Config
from lanchat.errors import NodeError
from lanchat.identity import Identity
from lanchat.notices import Warnings, refusal_notice
from lanchat.peers import PeerTable
from lanchat.session import Session
from lanchat.sessions import SessionRegistry
from lanchat.store import Store
from lanchat.targets import StaticTarget
from lanchat.text import safe_line
from lanchat.tls import client_context, server_context

log = logging.getLogger("lanchat.node")

CONNECT_TIMEOUT_S = 3.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
STABLE_SESSION_S = 2.0  # a session that lasted less does not reset the dial backoff
DIAL_STOP_S = 2.0  # how long stop() waits for the dial loops to end
PROBE_FORGET_S = 5.0  # a self-probe's address is recognised this long after it connected


def ssl_error() -> type[Exception]:
    """The ssl module's error type (imported lazily for start-up time)."""
    import ssl

    return ssl.SSLError


class _Acceptor(asyncio.Protocol):
    """Holds a fresh TCP connection until TLS takes over."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.dialer.accepted(transport)


class Dialer:
    """Listener and dial loops of one node."""

    def __init__(self, *, config: Config, identity: Identity, runtime: RuntimeApi,
                 sessions: SessionRegistry, owner: SessionOwner, store: Store,
                 table: PeerTable, nick: Callable[[], str], instance: str,
                 wanted: Callable[[str], bool], warnings: Warnings) -> None:
        self.config = config
        self.identity = identity
        self.runtime = runtime
        self.loop = runtime.loop
        self.sessions = sessions
        self.owner = owner
        self.store = store
        self.table = table
        self._nick = nick
        self.instance = instance
        self._wanted = wanted
        self._warnings = warnings
        self.port = 0
        self.closing = False
        self.statics: dict[str, StaticTarget] = {}
        for text in config.peers:
            target = StaticTarget.parse(text)
            self.statics[target.key] = target
        self._servers: list[asyncio.AbstractServer] = []
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._kicks: dict[str, asyncio.Event] = {}
        self._probes: set[tuple[str, int]] = set()  # our own port checks (doctor)
        self._server_ctx = server_context(identity)
        self._client_ctx = client_context()
        self._liveness = (config.heartbeat_s, config.dead_after_s)
        self._link_timeout_s = config.link_timeout_s

    # -- listening ------------------------------------------------------------------------

    async def listen(self) -> list[str]:
        """Bind the listener; return the addresses it is reachable on (may be empty)."""
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
        return [h for h in hosts if h != "0.0.0.0"]

    async def _bind(self, hosts: list[str], port: int) -> None:
        self.close_listeners()
        for host in hosts:
            server = await self.loop.create_server(
                lambda: _Acceptor(self), host, port, reuse_address=True, backlog=512)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        self.port = port

    def close_listeners(self) -> None:
        """Stop accepting connections."""
        for server in self._servers:
            server.close()
        self._servers = []

    def expect_probe(self, local: tuple[str, int]) -> None:
        """This node is about to connect to its own port from `local` (a reachability
        check): take it without a TLS handshake and without reporting a refusal."""
        self._probes.add(local)
        self.loop.call_later(PROBE_FORGET_S, self._probes.discard, local)

    def probe_port(self, ip: str, timeout: float) -> bool:
        """True if our chat port takes TCP connections on `ip` (any thread but the loop's:
        doctor's check, which the listener knows and neither handshakes nor reports)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.bind((ip, 0))
            except OSError:
                return False
            self.runtime.call(self.expect_probe, sock.getsockname()[:2])
            try:
                sock.connect((ip, self.port))
            except OSError:
                return False
        return True

    def accepted(self, transport: asyncio.Transport) -> None:
        """A TCP connection came in: upgrade it to TLS, unless too many are pending."""
        peer = transport.get_extra_info("peername")
        if peer is not None and (str(peer[0]), int(peer[1])) in self._probes:
            self._probes.discard((str(peer[0]), int(peer[1])))
            self.runtime.count("self_probes")
            transport.abort()
            return
        if self.closing or not self.sessions.handshake_begins():
            self.runtime.count("handshakes_shed")
            transport.abort()
            return
        self.loop.create_task(self._upgrade(transport))

    def _session(self, *, server: bool, address: str,
                 expected_id: str | None = None) -> Session:
        return Session(self.owner, self.identity, self._nick(), self.port, server=server,
                       address=address, expected_id=expected_id, loop=self.loop,
                       instance=self.instance, liveness=self._liveness,
                       link_timeout_s=self._link_timeout_s)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        session = self._session(server=True, address=str(peer[0]))
        try:
            tls = await self.loop.start_tls(transport, session, self._server_ctx,
                                            server_side=True,
                                            ssl_handshake_timeout=CONNECT_TIMEOUT_S)
        except (OSError, ConnectionError, TimeoutError, ssl_error()) as exc:
            self.runtime.count("tls_failed")
            log.info("TLS from %s failed: %s", peer[0], safe_line(str(exc)))
            transport.abort()
            reason = "handshake not finished in time" if isinstance(exc, TimeoutError) else (
                f"TLS handshake failed: {exc}")
            self.report("session_refused", str(peer[0]), reason)
            return
        finally:
            self.sessions.handshake_ends()
        if tls is None:
            return
        self.sessions.add(session)
        session.connection_made(tls)

    # -- dialing --------------------------------------------------------------------------

    def start(self, keys: list[str]) -> None:
        """Dial every static target and these peers."""
        for key in [*self.statics, *keys]:
            self.ensure(key)

    def ensure(self, key: str, *, kick: bool = True) -> None:
        """Start a dial loop for `key`; `kick` cuts a running loop's backoff short."""
        event = self._kicks.get(key)
        if event is not None and kick:
            event.set()
        task = self._dialers.get(key)
        if task is not None and not task.done():
            return
        if self.closing:
            return
        self._kicks[key] = asyncio.Event()
        self._dialers[key] = self.loop.create_task(self._dial_loop(key))

    def wants(self, key: str) -> bool:
        """True while a session to `key` is wanted (a static target, or something waits)."""
        if self.closing:
            return False
        return key in self.statics or self._wanted(key)

    async def stop(self) -> None:
        """End every dial loop."""
        self.closing = True
        dialers = list(self._dialers.values())
        for task in dialers:
            task.cancel()
        if not dialers:
            return
        _, left = await asyncio.wait(dialers, timeout=DIAL_STOP_S)
        if left:  # never seen since the loop checks `wants` after every dial; say so if it is
            log.warning("%d dial loop(s) still running at close", len(left))

    def pin_static(self, key: str | None, peer_id: str) -> bool:
        """A session made by a static dialer: pin the typed address to the peer's id.
        True when the session came from an address the user typed (`--peer`)."""
        if key is None or key not in self.statics:
            return False
        try:
            if self.store.peers.pinned(key) is None:
                self.store.peers.pin(key, peer_id)
        except sqlite3.Error as exc:
            log.warning("could not pin %s: %s", key, exc)
        return True

    def _static_peer_id(self, key: str) -> str | None:
        target = self.statics.get(key)
        if target is None:
            return key
        return self.store.peers.pinned(key) or target.expected_id

    async def _dial_loop(self, key: str) -> None:
        """Keep a session to `key` while one is wanted; back off while none lasts."""
        backoff = BACKOFF_MIN_S
        kick = self._kicks[key]
        try:
            while self.wants(key):
                kick.clear()
                peer_id = self._static_peer_id(key)
                live = self.sessions.get(peer_id) if peer_id else None
                if live is None:
                    live = await self._dial_once(key)
                    # Python 3.11's wait_for returns a result that lands together with a
                    # cancel and drops the cancel: stop() may have come meanwhile. Waiting
                    # on the new session then would wait for the close that waits for us.
                    if not self.wants(key):
                        break
                if live is not None:
                    began = self.loop.time()
                    await asyncio.shield(live.closed)
                    if self.loop.time() - began >= STABLE_SESSION_S:
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
        target = self.statics.get(key)
        if target is not None:
            return [(target.host, target.port, self._static_peer_id(key))]
        return [(addr, port, key) for addr, port in self.table.dial_order(key)]

    async def _dial_once(self, key: str) -> PeerSession | None:
        for host, port, expected in self._dial_targets(key):
            if self.closing:
                return None
            live = self.sessions.get(expected) if expected else None
            if live is not None:
                return live
            session = await self._connect(host, port, expected, key)
            if session is not None:
                return session
        return None

    async def _connect(self, host: str, port: int, expected: str | None,
                       key: str) -> Session | None:
        session = self._session(server=False, address=host, expected_id=expected)
        session.dial_key = key
        session.peer_port = port
        session.on_ready = self.loop.create_future()
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: session, host, port,
                                            ssl=self._client_ctx, server_hostname=None,
                                            ssl_handshake_timeout=CONNECT_TIMEOUT_S),
                CONNECT_TIMEOUT_S + 1)
        except (OSError, TimeoutError, ConnectionError, ssl_error()) as exc:
            self.runtime.count("dial_failed")
            log.info("connect %s:%d failed: %s", safe_line(host), port, safe_line(str(exc)))
            return None
        self.sessions.add(session)
        await asyncio.wait([session.on_ready, session.closed], timeout=CONNECT_TIMEOUT_S * 2,
                           return_when=asyncio.FIRST_COMPLETED)
        if not session.ready:
            session.abort()
            return None
        return session

    def report(self, code: str, address: str, reason: str) -> None:
        """An `error` event for a refused connection: said once per address and code, then
        at most hourly while it goes on (lanchat/notices.py); doctor lists it."""
        self._warnings.warn(f"{code}:{address}", "error", code=code, address=address,
                            message=refusal_notice(code, address, reason))


def local_addresses() -> list[str]:
    """This host's address as its name resolves (the `ready` event's fallback when no
    interface was chosen; discovery, when attached, announces the interfaces it uses)."""
    try:
        return [socket.gethostbyname(socket.gethostname())]
    except OSError:
        return []
