"""UDP multicast presence beacon: hello burst on start, jittered heartbeats, bye on stop.

Wire format: one UTF-8 JSON object per datagram (at most MAX_DATAGRAM bytes),
``{"v":1,"t":"hello"|"hb"|"bye","id":NODE_ID,"nick":..,"host":..,"port":TCP_PORT,
"inst":INSTANCE,"seq":N}``. `inst` is random per start; `seq` grows with every beacon round
(the same round carries the same seq on every interface). Unknown extra keys are ignored.

Sockets: one receiving socket bound to (group, beacon_port) with SO_REUSEADDR and
SO_REUSEPORT (several nodes on one host all receive), IP_MULTICAST_ALL=0, a membership on
each interface, and IP_PKTINFO, which names the interface each datagram came in on: that
interface's subnet decides whether the sender is on-link. (One socket per interface, each
bound to the group, does not keep interfaces apart: Linux hands a datagram from one
interface to the socket of another, where it looked off-link and was dropped, so a
two-homed peer was often known at one address only.) Sending: one socket per interface,
bound to its address, IP_MULTICAST_IF set to it (sends leave only there), TTL 1, loopback
on. An interface that cannot be set up is skipped, logged and reported by `stats()`; a
failing send is counted, never fatal.

Everything runs on the caller's asyncio loop; `on_seen` / `on_bye` are called on that loop's
thread and must return quickly. A beacon is only a hint: anyone on the link can forge one,
so identity is proven later by TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import re
import secrets
import socket
import struct
import sys
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeGuard

from lanchat.discovery.interfaces import Interface
from lanchat.discovery.sighting import Dropped, DropReason, Sighting
from lanchat.identity import is_node_id
from lanchat.nicks import MAX_WIRE_NICK_CHARS, check_nick, clean_received_nick, nick_problem
from lanchat.protocol import PROTOCOL_VERSION

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
MULTICAST_TTL = 1  # never leaves the link

MAX_DATAGRAM = 1024  # bytes; larger datagrams are dropped unparsed
HOST_MAX_CHARS = 253
INSTANCE_MAX_CHARS = 64
SEQ_MAX = 2**63 - 1

# Receive-side bounds, read once per Beacon (tests may patch them before construction).
MAX_TRACKED = 4096  # (id, instance, source) entries for replay detection; oldest evicted
MAX_SOURCES = 1024  # per-source rate buckets (of each kind); oldest evicted
# Two token buckets per source address. Nodes on one host share a source address, so the
# bucket for all datagrams is generous; the one for datagrams that add a new (id, instance)
# entry is tight, which is what stops a flood of random ids.
SOURCE_RATE_PER_S = 200.0  # datagrams per second a source may send us
SOURCE_BURST = 400.0  # ... and at once
NEW_PEER_RATE_PER_S = 20.0  # new (id, instance) entries per second a source may create
NEW_PEER_BURST = 40.0  # ... and at once

_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux only
_IS_LINUX = sys.platform.startswith("linux")
# struct in_pktinfo {int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr;} (Linux)
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8 if _IS_LINUX else None)
_PKTINFO = struct.Struct("i4s4s")
READS_PER_WAKE = 64  # datagrams read per readiness callback before the loop runs others

_INSTANCE_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{INSTANCE_MAX_CHARS}}}")
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class Kind(StrEnum):
    """The `t` field of a beacon."""

    HELLO = "hello"
    HEARTBEAT = "hb"
    BYE = "bye"


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class _Message:
    kind: Kind
    node_id: str
    nick: str
    host: str
    port: int
    instance: str
    seq: int
    ephemeral: bool = False  # a one-shot run (send, peers, doctor): answered, not listed


def _is_clean_text(value: str) -> bool:
    """True if value has no control, line-separator or bidi-override characters."""
    return not any(
        unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in value
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_nick(nick: object) -> bool:
    """True if nick follows the nick rule (lanchat/nicks.py)."""
    return nick_problem(nick) is None


def valid_host(host: object) -> bool:
    """True if host may travel in a beacon: up to HOST_MAX_CHARS chars, no control chars."""
    return isinstance(host, str) and len(host) <= HOST_MAX_CHARS and _is_clean_text(host)


def decode(data: bytes) -> _Message:
    """Parse and check one datagram; raise Dropped(reason) if it is not a valid beacon."""
    if len(data) > MAX_DATAGRAM:
        raise Dropped(DropReason.OVERSIZE)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise Dropped(DropReason.NOT_JSON) from None
    if not isinstance(obj, dict):
        raise Dropped(DropReason.MALFORMED)
    version = obj.get("v")
    if not _is_int(version):
        raise Dropped(DropReason.MALFORMED)
    if version != PROTOCOL_VERSION:
        raise Dropped(DropReason.BAD_VERSION)
    kind, node_id, inst, seq = obj.get("t"), obj.get("id"), obj.get("inst"), obj.get("seq")
    nick, host, port = obj.get("nick"), obj.get("host"), obj.get("port")
    if kind not in ("hello", "hb", "bye") or not _is_int(seq) or not 0 <= seq <= SEQ_MAX:
        raise Dropped(DropReason.MALFORMED)
    if not isinstance(node_id, str) or not isinstance(inst, str):
        raise Dropped(DropReason.MALFORMED)
    if not is_node_id(node_id) or not _INSTANCE_RE.fullmatch(inst):
        raise Dropped(DropReason.BAD_ID)
    if not isinstance(nick, str) or len(nick) > MAX_WIRE_NICK_CHARS:
        raise Dropped(DropReason.MALFORMED)
    nick = clean_received_nick(nick, node_id, source="beacon")
    if not valid_host(host):
        raise Dropped(DropReason.BAD_HOST)
    if not _is_int(port) or not 1 <= port <= 65535:
        raise Dropped(DropReason.BAD_PORT)
    assert isinstance(nick, str) and isinstance(host, str) and isinstance(port, int)
    return _Message(Kind(kind), node_id, nick, host, port, inst, seq, obj.get("eph") is True)


def encode(kind: Kind, *, node_id: str, nick: str, host: str, port: int, instance: str,
           seq: int, ephemeral: bool = False) -> bytes:
    """One beacon datagram."""
    body = {"v": PROTOCOL_VERSION, "t": kind.value, "id": node_id, "nick": nick, "host": host,
            "port": port, "inst": instance, "seq": seq}
    if ephemeral:
        body["eph"] = True
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _RateLimit:
    """Token buckets keyed by source address; only the most recent `max_keys` are kept."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, t]

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket; False if it is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [self._burst, now]
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True


class _Link:
    """One interface: its sending socket, its index and counters."""

    def __init__(self, iface: Interface) -> None:
        self.iface = iface
        self.network = iface.network
        self.sock: socket.socket | None = None
        self.ifindex: int | None = None
        self.joined = False
        self.setup_error: str | None = None
        self.send_error: str | None = None
        self.sent = 0
        self.send_errors = 0
        self.received = 0
        self.accepted = 0

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.iface.name,
            "ip": self.iface.ip,
            "joined": self.joined,
            "error": self.setup_error or self.send_error,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "received": self.received,
            "accepted": self.accepted,
        }


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
        unique = list({i.ip: i for i in interfaces}.values())
        self._links = [_Link(i) for i in unique]

        self._max_tracked = MAX_TRACKED
        self._all_limit = _RateLimit(SOURCE_RATE_PER_S, SOURCE_BURST, MAX_SOURCES)
        self._new_limit = _RateLimit(NEW_PEER_RATE_PER_S, NEW_PEER_BURST, MAX_SOURCES)

        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._rx: socket.socket | None = None
        self._rx_error: str | None = None
        self._answer_handle: asyncio.TimerHandle | None = None
        self._last_answer = float("-inf")
        self._seq = 0
        # (id, instance, source address) -> [last seq, said bye]
        self._tracked: OrderedDict[tuple[str, str, str], list[Any]] = OrderedDict()
        self._dropped = dict.fromkeys((r.value for r in DropReason), 0)
        self._accepted = 0
        self._evicted = 0
        self._warned_clash = False

    # -- public API

    async def start(self) -> None:
        """Open one socket per interface, send the first hello, schedule burst and heartbeats."""
        if self._state is not _State.NEW:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._state = _State.RUNNING
        self._open_receiver()
        for link in self._links:
            self._open(link)
        if not any(link.sock is not None for link in self._links):
            log.warning("beacon: no interface usable (%s); peers will not hear us by beacon",
                        "; ".join(f"{ln.iface.ip}: {ln.setup_error}" for ln in self._links)
                        or "none given")
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
        for link in self._links:
            if link.sock is not None:
                link.sock.close()
            link.sock = None
        if self._rx is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._rx.fileno())
            self._rx.close()
            self._rx = None

    def stats(self) -> dict[str, Any]:
        """Counters for `lanchat doctor`: per interface, drops by reason, table sizes."""
        return {
            "running": self._state is _State.RUNNING,
            "node_id": self.node_id,
            "instance": self.instance,
            "group": self._group,
            "port": self._beacon_port,
            "seq": self._seq,
            "interfaces": {ln.iface.ip: ln.stats() for ln in self._links},
            "accepted": self._accepted,
            "ephemeral_heard": self.ephemeral_heard,
            "dropped": dict(self._dropped),
            "tracked": len(self._tracked),
            "tracked_max": self._max_tracked,
            "evicted": self._evicted,
            "sources": len(self._all_limit),
        }

    # -- sockets

    def _open_receiver(self) -> None:
        """The one socket that hears every interface; on failure record why."""
        step = "create socket"
        sock: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setblocking(False)
            step = "set socket options"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if _IS_LINUX:
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            if _IP_PKTINFO is not None:
                sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
            step = f"bind port {self._beacon_port}"
            # Binding the group address keeps unicast to our port out (Windows cannot).
            sock.bind(("" if sys.platform == "win32" else self._group, self._beacon_port))
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._on_readable)
        except (OSError, NotImplementedError) as exc:
            if sock is not None:
                sock.close()
            self._rx_error = f"{step} failed: {getattr(exc, 'strerror', None) or exc}"
            log.warning("beacon: cannot listen for beacons: %s", self._rx_error)
            return
        self._rx = sock

    def _open(self, link: _Link) -> None:
        """Join the group on one interface and set up its sending socket; on failure
        record why and skip it."""
        ip = link.iface.ip
        step = "join"
        sock: socket.socket | None = None
        try:
            if self._rx is None:
                raise OSError(self._rx_error or "no receiving socket")
            step = f"join {self._group}"
            mreq = socket.inet_aton(self._group) + socket.inet_aton(ip)
            self._rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            link.joined = True
            with contextlib.suppress(OSError):
                link.ifindex = socket.if_nametoindex(link.iface.name)
            step = "create socket"
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setblocking(False)
            step = "set socket options"
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            step = "select multicast interface"
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
            step = f"bind {ip}"
            sock.bind((ip, 0))
        except OSError as exc:
            if sock is not None:
                sock.close()
            link.setup_error = f"{step} failed: {exc.strerror or exc}"
            log.warning("beacon: skipping interface %s (%s): %s", link.iface.name, ip,
                        link.setup_error)
            return
        link.sock = sock
        log.debug("beacon: listening on %s (%s) for %s:%d", link.iface.name, ip, self._group,
                  self._beacon_port)

    def _on_readable(self) -> None:
        """Read what the receiving socket holds; each datagram goes to the link it came in
        on (IP_PKTINFO), or, without that, to the link whose subnet holds its source."""
        rx = self._rx
        if rx is None:
            return
        for _ in range(READS_PER_WAKE):
            try:
                data, ancillary, _, addr = rx.recvmsg(MAX_DATAGRAM + 1,
                                                      socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("beacon: receive error: %s", exc)
                return
            source = str(addr[0])
            ifindex = next((_PKTINFO.unpack(d[:_PKTINFO.size])[0] for level, kind, d
                            in ancillary if level == socket.IPPROTO_IP
                            and kind == _IP_PKTINFO and len(d) >= _PKTINFO.size), None)
            link = self._arrival_link(ifindex, source)
            if link is None:
                self._drop(DropReason.OFF_LINK, source)
                continue
            self._on_datagram(link, data, source)

    def _arrival_link(self, ifindex: int | None, source: str) -> _Link | None:
        """The link a datagram came in on (None: an interface we do not use)."""
        if ifindex is not None:
            return next((ln for ln in self._links if ln.ifindex == ifindex), None)
        try:
            address = ipaddress.IPv4Address(source)
        except ValueError:
            return None
        return next((ln for ln in self._links if address in ln.network), None)

    def _send(self, kind: Kind) -> None:
        """Send one beacon round (one datagram per usable interface)."""
        self._seq += 1
        data = encode(kind, node_id=self.node_id, nick=self._nick, host=self._host,
                      port=self._port, instance=self.instance, seq=self._seq,
                      ephemeral=self.ephemeral)
        for link in self._links:
            if link.sock is None:
                continue
            try:
                link.sock.sendto(data, (self._group, self._beacon_port))
            except OSError as exc:
                link.send_errors += 1
                error = f"send failed: {exc.strerror or exc}"
                if error != link.send_error:
                    log.warning("beacon: %s on %s (%s)", error, link.iface.name, link.iface.ip)
                link.send_error = error
            else:
                link.sent += 1
                if link.send_error is not None:
                    log.info("beacon: sending on %s works again", link.iface.ip)
                    link.send_error = None

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

    def _on_datagram(self, link: _Link, data: bytes, source: str) -> None:
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
        if not self._all_limit.allow(source, now):
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
        key = (msg.node_id, msg.instance, source)
        entry = self._tracked.get(key)
        new = entry is None
        if entry is None:
            if not self._new_limit.allow(source, now):
                self._drop(DropReason.RATE_LIMITED, source)
                return
            entry = [msg.seq, False]
            self._tracked[key] = entry
            if len(self._tracked) > self._max_tracked:
                self._tracked.popitem(last=False)
                self._evicted += 1
        elif msg.seq <= entry[0]:
            self._drop(DropReason.REPLAY, source)
            return
        else:
            entry[0] = msg.seq
            self._tracked.move_to_end(key)
        link.accepted += 1
        self._accepted += 1
        if msg.kind is Kind.BYE:
            if entry[1] and not new:
                return  # the repeated bye of the same instance: reported once
            entry[1] = True
            self._call(self._on_bye, msg.node_id, source)
            return
        entry[1] = False
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
