"""The Bonjour chat (XEP-0174) peer kind: a node extension.

It announces this node as `nick@host` on `_presence._tcp`, lists the peers it sees (kind
"xmpp", unencrypted), accepts streams only from the address of a peer that announced the
instance named in the stream header, and gives the node one `XmppSession` per peer.
Everything here runs on the node's loop thread except the presence callbacks, which are
marshalled onto it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from typing import Any

from lanchat.interop import foreign_id
from lanchat.interop.xmpp.connection import XmppSession, XmppStream
from lanchat.interop.xmpp.presence import DEFAULT_PORT, Buddy, Presence, instance_name
from lanchat.interop.xmpp.stream import StreamOpened
from lanchat.nicks import clean_received_nick

log = logging.getLogger(__name__)

KIND = "xmpp"
MAX_STREAMS_PER_ADDRESS = 4  # connections one announced address may hold open at once
CONNECT_TIMEOUT_S = 5.0
REFUSALS_LOGGED = 20  # then only counted
# Stream errors we send, counted per condition when the stream closes.
REFUSALS_COUNTED = ("restricted-xml", "not-well-formed", "policy-violation",
                    "invalid-namespace", "connection-timeout")


class XmppKind:
    """Node extension for Bonjour chat peers."""

    kind = KIND

    def __init__(self) -> None:
        self.node: Any = None
        self.presence: Presence | None = None
        self.instance = ""
        self.port = 0
        self.buddies: dict[str, Buddy] = {}  # peer id -> as announced
        self.nicks: dict[str, str] = {}  # peer id -> its name after the nick rule
        self._by_instance: dict[str, str] = {}  # instance -> peer id
        self.sessions: dict[str, XmppSession] = {}  # peer id -> session (ready or not)
        self.streams: set[XmppStream] = set()
        self.refused: Counter[str] = Counter()
        self.errors: list[str] = []
        self.networks: list[ipaddress.IPv4Interface] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._presence_start: asyncio.Task[None] | None = None
        self._dialing: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    # -- extension -------------------------------------------------------------------

    async def start(self, node: Any) -> None:
        """Listen on our interfaces (5298 when free), then announce and browse."""
        from lanchat.discovery.interfaces import usable_interfaces

        self.node = node
        config = node.config
        try:
            interfaces = usable_interfaces(config.interfaces)
        except ValueError as exc:
            self.errors.append(str(exc))
            return
        ips = [i.ip for i in interfaces]
        self.networks = [ipaddress.IPv4Interface(f"{i.ip}/{i.prefixlen}") for i in interfaces]
        if not ips:
            self.errors.append("no usable interface")
            return
        loop = asyncio.get_running_loop()
        self.port = await self._listen(loop, ips)
        if not self.port:
            return
        self.instance = instance_name(node.nick, config.host or "host")
        self.presence = Presence(
            instance=self.instance, first=node.nick,
            server=f"lanchat-{node.node_id[:16]}.local.", port=self.port,
            interfaces=self.networks,
            on_seen=lambda b: loop.call_soon_threadsafe(self._seen, b),
            on_gone=lambda i: loop.call_soon_threadsafe(self._gone, i),
            announce=not config.ephemeral)
        self._presence_start = loop.create_task(self._start_presence(node))

    async def _start_presence(self, node: Any) -> None:
        """Announce on the node's own zeroconf once its mDNS is up (one responder per
        process), or on an instance of our own under --no-mdns."""
        shared = None
        discovery = next((e for e in node.extensions if hasattr(e, "mdns")), None)
        if discovery is not None and discovery.mdns is not None:
            starting = getattr(discovery, "_mdns_start", None)
            if starting is not None:
                try:
                    await asyncio.shield(starting)
                except Exception as exc:  # noqa: BLE001 - then we try our own instance
                    log.info("xmpp: the node's mDNS did not start: %s", exc)
            shared = discovery.mdns.zeroconf
        assert self.presence is not None
        await asyncio.get_running_loop().run_in_executor(None, self.presence.start, shared)

    async def _listen(self, loop: asyncio.AbstractEventLoop, ips: list[str]) -> int:
        for port in (DEFAULT_PORT, 0):
            servers: list[asyncio.AbstractServer] = []
            server: asyncio.AbstractServer
            try:
                for ip in ips:
                    server = await loop.create_server(self._accept, ip, port)
                    servers.append(server)
                    port = port or server.sockets[0].getsockname()[1]
            except OSError as exc:
                for server in servers:
                    server.close()
                if port:
                    continue
                self.errors.append(f"cannot listen: {exc}")
                return 0
            self._servers = servers
            return port
        return 0

    async def stop(self) -> None:
        """Close every stream with `</stream:stream>`, then say goodbye on mDNS."""
        self._stopping = True
        for task in self._dialing.values():
            task.cancel()
        for server in self._servers:
            server.close()
        for stream in list(self.streams):
            stream.close()
        if self.presence is not None:
            self.presence.cancel()  # still probing: stop now, not after the probe
            loop = asyncio.get_running_loop()
            if self._presence_start is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._presence_start), 5)
                except Exception as exc:  # noqa: BLE001 - going away anyway
                    log.info("xmpp presence start did not finish: %s", exc)
            await loop.run_in_executor(None, self.presence.stop)

    def set_nick(self, nick: str) -> None:
        """Our `1st` follows the nick (the instance name stays what it was)."""
        if self.presence is not None:
            asyncio.get_running_loop().run_in_executor(None, self.presence.set_first, nick)

    def on_message(self, session: Any, message: Any) -> bool:
        """XMPP sessions carry no lanchat control messages."""
        return False

    def stats(self) -> dict[str, Any]:
        """What doctor shows and tests count."""
        return {"instance": self.instance, "port": self.port, "errors": list(self.errors),
                "presence": self.presence.stats() if self.presence is not None else None,
                "peers": len(self.buddies), "streams": len(self.streams),
                "refused": dict(self.refused),
                "interfaces": {str(n.ip): sum(1 for b in self.buddies.values()
                                              if ipaddress.IPv4Address(b.address) in n.network)
                               for n in self.networks}}

    # -- presence (loop thread) -------------------------------------------------------------

    def _seen(self, buddy: Buddy) -> None:
        if self._stopping:
            return
        peer_id = foreign_id(KIND, buddy.instance, buddy.address)
        old = self._by_instance.get(buddy.instance)
        if old is not None and old != peer_id:  # the same name from a new address
            self._gone(buddy.instance)
        self.buddies[peer_id] = buddy
        self._by_instance[buddy.instance] = peer_id
        nick = clean_received_nick(buddy.name, peer_id, source=KIND)
        self.nicks[peer_id] = nick
        self.node.presence.seen(peer_id, KIND, time.time(), nick=nick, host=buddy.instance,
                                address=buddy.address, port=buddy.port, kind=KIND)

    def _gone(self, instance: str) -> None:
        peer_id = self._by_instance.pop(instance, None)
        if peer_id is None:
            return
        self.buddies.pop(peer_id, None)
        session = self.sessions.get(peer_id)
        if session is not None:
            session.close("peer left")
        self.nicks.pop(peer_id, None)
        self.node.presence.lost(peer_id, KIND, "bye", time.time())

    # -- streams ----------------------------------------------------------------------------

    def _accept(self) -> XmppStream:
        return _ServerStream(self, self.instance, server=True,
                             loop=asyncio.get_running_loop())

    def stream_connected(self, stream: XmppStream) -> bool:
        """An inbound connection: only from an address that announced a peer."""
        announced = any(b.address == stream.address for b in self.buddies.values())
        if not announced:
            return self._refuse(stream, "unannounced", "no peer announced this address")
        same = sum(1 for s in self.streams if s.address == stream.address)
        if same >= MAX_STREAMS_PER_ADDRESS:
            return self._refuse(stream, "too_many_streams", "too many streams")
        self.streams.add(stream)
        return True

    def _refuse(self, stream: XmppStream, key: str, detail: str) -> bool:
        self.refused[key] += 1
        if sum(self.refused.values()) <= REFUSALS_LOGGED:
            log.warning("xmpp: refused a stream from %s: %s", stream.address, detail)
        return False

    def stream_opened(self, stream: XmppStream, opened: StreamOpened) -> str | None:
        """The peer's header: its `from` must be an instance announced at this address."""
        peer_id = self._by_instance.get(stream.instance)
        buddy = self.buddies.get(peer_id or "")
        if buddy is None or buddy.address != stream.address:
            self._refuse(stream, "unannounced", f"{stream.instance[:64]!r} not announced here")
            return "not an announced peer at this address"
        return None

    def stream_ready(self, stream: XmppStream) -> None:
        """The stream is open both ways: it serves its peer's session from now on."""
        peer_id = self._by_instance.get(stream.instance)
        buddy = self.buddies.get(peer_id or "")
        if peer_id is None or buddy is None:
            stream.close()
            return
        session = self.sessions.get(peer_id)
        if session is None or session.state.value == "closed":
            session = XmppSession(self.node, peer_id, self.nicks.get(peer_id, buddy.name),
                                  buddy.instance, asyncio.get_running_loop())
            self.sessions[peer_id] = session
        if session.attach(stream):
            self.node.session_ready(session)
        else:
            self.node.session_writable(session)

    def stream_text(self, stream: XmppStream, text: str) -> None:
        """A message on any stream of the peer."""
        if stream.session is not None:
            stream.session.text_received(text)

    def stream_writable(self, stream: XmppStream) -> None:
        """Let the node pump more."""
        if stream.session is not None:
            self.node.session_writable(stream.session)

    def stream_closed(self, stream: XmppStream, error: str) -> None:
        """Count the refusal, if it was one; end the session with its last stream."""
        self.streams.discard(stream)
        key = error.split(":", 1)[0]
        if key in REFUSALS_COUNTED:  # a refusal of ours (not-authorized is counted at once)
            self.refused[key] += 1
        session: XmppSession | None = stream.session
        if session is not None:
            session.detach(stream, error)
            if session.state.value == "closed" and self.sessions.get(session.peer_id) is session:
                del self.sessions[session.peer_id]

    # -- dialing ----------------------------------------------------------------------------

    def dial(self, peer_id: str) -> None:
        """Open a stream to the peer unless one is open or opening."""
        if self._stopping or peer_id in self._dialing:
            return
        session = self.sessions.get(peer_id)
        if session is not None and session.ready:
            return
        buddy = self.buddies.get(peer_id)
        if buddy is None:
            return
        task = asyncio.get_running_loop().create_task(self._dial(peer_id, buddy))
        self._dialing[peer_id] = task
        task.add_done_callback(lambda _t: self._dialing.pop(peer_id, None))

    async def _dial(self, peer_id: str, buddy: Buddy) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, stream = await asyncio.wait_for(loop.create_connection(
                lambda: XmppStream(self, self.instance, server=False,
                                   instance=buddy.instance, loop=loop),
                buddy.address, buddy.port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.errors.append(f"{buddy.instance}: {exc}"[:200])
            del self.errors[:-10]
            return
        self.streams.add(stream)


class _ServerStream(XmppStream):
    """An inbound stream: it asks the kind before reading a byte."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        owner = self.owner
        assert isinstance(owner, XmppKind)
        if not owner.stream_connected(self):
            self.abort()


def attach(node: Any) -> XmppKind:
    """Add the Bonjour chat peer kind to a node that is not started yet."""
    kind = XmppKind()
    node.add_extension(kind)
    return kind
