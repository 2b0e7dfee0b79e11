"""UDP multicast presence beacon: hello burst on start, jittered heartbeats, bye on stop.

This module is the beacon's schedule and its bookkeeping of what it hears: which (id,
instance, source) it has seen at which seq (replays dropped), per-source rate limits, and
the `on_seen` / `on_bye` reports. The wire format and the checks on each datagram live in
`beacon_wire`, the sockets (one receiving socket with IP_PKTINFO, one sending socket per
interface) in `beacon_sockets`.

Everything runs on the caller's asyncio loop; `on_seen` / `on_bye` are called on that loop's
thread and must return quickly. A beacon is only a hint: anyone on the link can forge one,
so identity is proven later by TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import secrets
import threading
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from lanchat.discovery.beacon_peers import PeerBook
from lanchat.discovery.beacon_sockets import BeaconSockets, Link
from lanchat.discovery.beacon_wire import (
    HOST_MAX_CHARS,
    MAX_DATAGRAM,
    SEQ_MAX,
    Kind,
    decode,
    encode,
    valid_host,
)
from lanchat.discovery.interfaces import Interface
from lanchat.discovery.sighting import Dropped, DropReason, Sighting
from lanchat.identity import is_node_id
from lanchat.nicks import check_nick

log = logging.getLogger(__name__)

BEACON_GROUP = "239.255.77.77"  # administratively scoped (RFC 2365), never routed off-site
BEACON_PORT = 47812
BEACON_INTERVAL_S = 1.5  # mean interval between a node's beacon heartbeats
BEACON_JITTER = 0.2  # each interval is BEACON_INTERVAL_S * uniform(1 - j, 1 + j)
STALE_S = 4.5  # a peer unheard for this long is gone (the node's timer uses it)
START_BURST_S = (0.0, 0.1, 0.3)  # hello offsets after start()
HELLO_ANSWER_MIN_INTERVAL_S = 0.2  # at most one answer to new peers' hellos per interval
BYE_REPEAT = 2  # byes sent on stop()
BYE_GAP_S = 0.02  # pause between the repeated byes


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Beacon:
    """Announces this node by multicast and reports the beacons of other nodes.

    `on_seen(sighting)` fires for every accepted hello or heartbeat, `on_bye(node_id,
    address)` for a peer's goodbye; both on the loop thread. Use from the node's loop:
    `await start()`, `await stop()`; `set_nick()` and `stats()` may be called from any thread.
    """

    def __init__(
        self,
        *,
        node_id: str,
        nick: str,
        host: str,
        port: int,
        interfaces: Sequence[Interface],
        on_seen: Callable[[Sighting], None],
        on_bye: Callable[[str, str], None],
        group: str = BEACON_GROUP,
        beacon_port: int = BEACON_PORT,
        ephemeral: bool = False,
    ) -> None:
        if not is_node_id(node_id):
            raise ValueError(f"node id {node_id!r} is not 52 characters of base32")
        nick = check_nick(nick)
        if not valid_host(host):
            raise ValueError(f"host {host!r} must be at most {HOST_MAX_CHARS} printable chars")
        if not 1 <= port <= 65535:
            raise ValueError(f"TCP port {port} is not in 1..65535")
        if not 1 <= beacon_port <= 65535:
            raise ValueError(f"beacon port {beacon_port} is not in 1..65535")
        if not ipaddress.IPv4Address(group).is_multicast:
            raise ValueError(f"beacon group {group} is not an IPv4 multicast address")
        self.node_id = node_id
        self.instance = secrets.token_hex(8)
        self.ephemeral = ephemeral  # a one-shot run: others answer but do not list us
        self.ephemeral_heard = 0
        self._nick = nick
        self._host = host
        self._port = port
        self._group = group
        self._beacon_port = beacon_port
        self._on_seen = on_seen
        self._on_bye = on_bye
        self._check_size(nick)
        self._sockets = BeaconSockets(group=group, port=beacon_port, interfaces=interfaces)

        self._peers = PeerBook()

        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._answer_handle: asyncio.TimerHandle | None = None
        self._last_answer = float("-inf")
        self._seq = 0
        self._dropped = dict.fromkeys((r.value for r in DropReason), 0)
        self._accepted = 0
        self._warned_clash = False

    # -- public API

    async def start(self) -> None:
        """Open the sockets (beacon_sockets), send the first hello, schedule the burst and
        the heartbeats."""
        if self._state is not _State.NEW:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._state = _State.RUNNING
        self._sockets.open(self._loop, self._on_datagram)
        self._send(Kind.HELLO)
        self._task = self._loop.create_task(self._run())

    def set_nick(self, nick: str) -> None:
        """Use `nick` from now on and announce it at once; thread-safe."""
        nick = check_nick(nick)
        self._check_size(nick)
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._apply_nick, nick)
        else:
            self._apply_nick(nick)

    async def stop(self) -> None:
        """Say bye on every interface (twice) and close the sockets; idempotent."""
        if self._state is not _State.RUNNING:
            self._state = _State.STOPPED
            return
        self._state = _State.STOPPED
        if self._answer_handle is not None:
            self._answer_handle.cancel()
            self._answer_handle = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for i in range(BYE_REPEAT):
            if i:
                await asyncio.sleep(BYE_GAP_S)
            self._send(Kind.BYE)
        self._sockets.close()

    def stats(self) -> dict[str, Any]:
        """Counters for `lanchat doctor`: per interface, drops by reason, table sizes."""
        return {
            "running": self._state is _State.RUNNING,
            "node_id": self.node_id,
            "instance": self.instance,
            "group": self._group,
            "port": self._beacon_port,
            "seq": self._seq,
            "interfaces": {ln.iface.ip: ln.stats() for ln in self._sockets.links},
            "accepted": self._accepted,
            "ephemeral_heard": self.ephemeral_heard,
            "dropped": dict(self._dropped),
            "tracked": self._peers.tracked,
            "tracked_max": self._peers.max_tracked,
            "evicted": self._peers.evicted,
            "sources": self._peers.sources,
        }

    # -- sending

    def _send(self, kind: Kind) -> None:
        """Send one beacon round (one datagram per usable interface)."""
        self._seq += 1
        data = encode(kind, node_id=self.node_id, nick=self._nick, host=self._host,
                      port=self._port, instance=self.instance, seq=self._seq,
                      ephemeral=self.ephemeral)
        self._sockets.send(data)

    def _check_size(self, nick: str) -> None:
        worst = encode(Kind.HELLO, node_id=self.node_id, nick=nick, host=self._host,
                       port=self._port, instance=secrets.token_hex(8), seq=SEQ_MAX)
        if len(worst) > MAX_DATAGRAM:
            raise ValueError(f"nick and host make a beacon over {MAX_DATAGRAM} bytes")

    # -- timers

    async def _run(self) -> None:
        """Rest of the start burst, then jittered heartbeats until cancelled."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for offset in START_BURST_S[1:]:
            await asyncio.sleep(max(0.0, started + offset - loop.time()))
            self._send(Kind.HELLO)
        while True:
            jitter = random.uniform(1 - BEACON_JITTER, 1 + BEACON_JITTER)
            await asyncio.sleep(BEACON_INTERVAL_S * jitter)
            self._send(Kind.HEARTBEAT)

    def _apply_nick(self, nick: str) -> None:
        self._nick = nick
        if self._state is _State.RUNNING:
            self._send(Kind.HEARTBEAT)

    def _answer_new_peer(self) -> None:
        """Answer a new peer's hello with a heartbeat, at most once per interval."""
        if self._answer_handle is not None or self._loop is None:
            return  # an answer is already due; it covers this peer too
        wait = self._last_answer + HELLO_ANSWER_MIN_INTERVAL_S - self._loop.time()
        if wait <= 0:
            self._send_answer()
        else:
            self._answer_handle = self._loop.call_later(wait, self._send_answer)

    def _send_answer(self) -> None:
        self._answer_handle = None
        if self._state is not _State.RUNNING or self._loop is None:
            return
        self._last_answer = self._loop.time()
        self._send(Kind.HEARTBEAT)

    # -- receiving

    def _drop(self, reason: DropReason, source: str) -> None:
        self._dropped[reason.value] += 1
        log.debug("beacon: dropped datagram from %s: %s", source, reason.value)

    def _on_datagram(self, link: Link | None, data: bytes, source: str) -> None:
        if link is None:
            self._drop(DropReason.OFF_LINK, source)
            return
        if self._state is not _State.RUNNING or self._loop is None:
            return
        link.received += 1
        if len(data) > MAX_DATAGRAM:
            self._drop(DropReason.OVERSIZE, source)
            return
        try:
            on_link = ipaddress.IPv4Address(source) in link.network
        except ValueError:
            on_link = False
        if not on_link:
            self._drop(DropReason.OFF_LINK, source)
            return
        now = self._loop.time()
        if not self._peers.allow(source, now):
            self._drop(DropReason.RATE_LIMITED, source)
            return
        try:
            msg = decode(data)
        except Dropped as dropped:
            self._drop(dropped.reason, source)
            return
        if msg.node_id == self.node_id:
            if msg.instance == self.instance:
                self._drop(DropReason.OWN, source)
            else:
                if not self._warned_clash:
                    log.warning("beacon: %s sends beacons with our own node id (instance %s): "
                                "a copied home directory or a forgery", source, msg.instance)
                    self._warned_clash = True
                self._drop(DropReason.ID_CLASH, source)
            return
        heard = self._peers.hear(msg, source, now)
        if isinstance(heard, DropReason):
            self._drop(heard, source)
            return
        entry, new = heard
        link.accepted += 1
        self._accepted += 1
        if msg.kind is Kind.BYE:
            if entry.said_bye and not new:
                return  # the repeated bye of the same instance: reported once
            entry.said_bye = True
            self._call(self._on_bye, msg.node_id, source)
            return
        entry.said_bye = False
        if msg.ephemeral:  # a one-shot `send`/`peers`/`doctor`: it hears us, we list it not
            self.ephemeral_heard += 1
            if new and msg.kind is Kind.HELLO:
                self._answer_new_peer()
            return
        self._call(self._on_seen, Sighting(
            node_id=msg.node_id, nick=msg.nick, host=msg.host, address=source, port=msg.port,
            instance=msg.instance, via="beacon", interface=link.iface.ip,
        ))
        if new and msg.kind is Kind.HELLO:
            self._answer_new_peer()

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("beacon: callback %r raised", callback)
