"""mDNS/DNS-SD announce and browse of `_lanchat._tcp.local.` with python-zeroconf.

Threads: zeroconf runs its own asyncio loop thread and a ServiceBrowser thread. The
browser thread only queues (change, name) pairs; one resolver thread here drains that
queue in order, resolves each name with a short timeout, validates the records and
calls `on_seen` / `on_gone`. Callbacks therefore run on that resolver thread, never on
the caller's thread: the node must marshal them to its own loop.

Name conflicts: registration probes first (RFC 6762 s8.1) and takes a "-2" suffix when the
name is visibly taken. On one host that probe is unreliable (the defender's unicast answer
reaches only one of the sockets bound to port 5353), so a node that later sees its name
announced by another node id keeps it if its id is lower (re-announcing after the rival's
burst) and otherwise moves to a suffixed name without a goodbye.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import queue
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from enum import Enum
from typing import Any

from zeroconf import (
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)

from lanchat.discovery.sighting import Dropped, DropReason, Sighting
from lanchat.identity import is_node_id
from lanchat.nicks import clean_received_nick
from lanchat.protocol import PROTOCOL_VERSION

log = logging.getLogger(__name__)

SERVICE_TYPE = "_lanchat._tcp.local."

RESOLVE_TIMEOUT_MS = 1500  # how long one resolve may wait for SRV/TXT/A answers
WORKER_JOIN_TIMEOUT_S = 0.5  # stop() waits at most this long for the resolver thread
LOOP_CALL_TIMEOUT_S = 0.5  # a quick look at zeroconf's cache on its loop
HOST_MAX_CHARS = 253
TXT_MAX_BYTES = 1300  # a sane TXT record is well under one Ethernet frame
TXT_STRING_MAX_BYTES = 255  # one `key=value` string in a TXT record (RFC 6763 s6.1)
INSTANCE_LABEL_MAX_BYTES = 56  # DNS labels stop at 63 bytes; room for zeroconf's "-NN" suffix
# False: probe first (RFC 6762 s8.1), so same-name conflicts get a "-2" suffix; peers see us
# ~1.2 s after start. True would skip probing and let two "alice@host" collide silently.
COOPERATING_RESPONDERS = False
DEFEND_INTERVAL_S = 1.0  # re-announce a contested name at most this often
DEFEND_DELAY_S = 2.0  # wait before re-announcing it (see _defend)
RECHECK_AFTER_S = (1.5, 3.5, 5.5)  # re-resolve a contested name this long after seeing it

_TYPE_TXT = 16  # DNS record type and class numbers (RFC 1035)
_CLASS_IN = 1
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class _Change(Enum):
    SEEN = "seen"
    GONE = "gone"


def _is_clean_text(value: str) -> bool:
    """True if value has no control, line-separator or bidi-override characters."""
    return not any(
        unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in value
    )


def _label_part(value: str) -> str:
    """Make text safe inside a DNS-SD instance label (no dots, no control chars)."""
    return "".join("-" if ch == "." else ch for ch in value if _is_clean_text(ch)).strip()


def instance_label(nick: str, host: str) -> str:
    """The instance label `<nick>@<host>`, cut to fit one DNS label."""
    label = f"{_label_part(nick) or 'lanchat'}@{_label_part(host) or 'host'}"
    return label.encode()[:INSTANCE_LABEL_MAX_BYTES].decode("utf-8", "ignore")


def _local_networks(interfaces: Sequence[str]) -> list[ipaddress.IPv4Interface]:
    """Our interface addresses with their prefixes (from ifaddr; /32 when unknown)."""
    prefixes: dict[str, int] = {}
    try:
        import ifaddr

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if isinstance(ip.ip, str):
                    prefixes[ip.ip] = int(ip.network_prefix)
    except Exception as exc:  # ifaddr is best effort: no prefix means no subnet preference
        log.debug("mdns: cannot list interface prefixes: %s", exc)
    return [ipaddress.IPv4Interface(f"{ip}/{prefixes.get(ip, 32)}") for ip in interfaces]


class MdnsService:
    """Announces this node and reports other lanchat nodes seen over mDNS.

    `on_seen(sighting)` fires when a peer's service resolves or changes, `on_gone(node_id)`
    when its last service is withdrawn. Both run on this service's resolver thread (not
    zeroconf's loop and not the caller's thread): marshal them to your own loop.
    `start()`, `set_nick()` and `stop()` block briefly; call them from a worker thread.
    """

    def __init__(
        self,
        *,
        node_id: str,
        nick: str,
        host: str,
        port: int,
        interfaces: Sequence[str],
        on_seen: Callable[[Sighting], object],
        on_gone: Callable[[str], object],
        announce: bool = True,
    ) -> None:
        if not is_node_id(node_id):
            raise ValueError(f"not a node id: {node_id!r}")
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"bad port: {port}")
        for address in interfaces:
            ipaddress.IPv4Address(address)  # raises ValueError: only IPv4 literals
        self._node_id = node_id
        self._nick = nick
        self._announce = announce
        self._host = host
        self._port = port
        self._interfaces = list(interfaces)
        self._on_seen = on_seen
        self._on_gone = on_gone

        self._lock = threading.Lock()
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._info: ServiceInfo | None = None
        self._worker: threading.Thread | None = None
        self._queue: queue.SimpleQueue[tuple[_Change, str] | None] = queue.SimpleQueue()
        self._networks: list[ipaddress.IPv4Interface] = []
        self._started = False
        self._closed = False
        self._enabled = False
        self._error: str | None = None
        self._seen: dict[str, Sighting] = {}  # instance name -> last sighting reported
        self._dropped: Counter[str] = Counter()
        self._sightings = 0
        self._goodbyes = 0
        self._last_defence = -DEFEND_INTERVAL_S
        self._rechecking: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open zeroconf on our interfaces, browse and register; network faults never raise."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        if not self._interfaces:
            self._fail("no interfaces to use; mDNS off")
            return
        try:
            zc = Zeroconf(interfaces=list(self._interfaces), ip_version=IPVersion.V4Only)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                self._fail(
                    "UDP port 5353 is held by another mDNS stack (Avahi with "
                    "disallow-other-stacks=yes?); mDNS off, the beacon still works"
                )
            else:
                self._fail(f"cannot open mDNS sockets on {self._interfaces}: {exc}; mDNS off")
            return
        except Exception as exc:  # zeroconf raises RuntimeError for unknown interfaces
            self._fail(f"cannot start zeroconf on {self._interfaces}: {exc}; mDNS off")
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._zc = zc
                self._enabled = True
        if closed:
            zc.close()
            return
        self._networks = _local_networks(self._interfaces)
        worker = threading.Thread(target=self._run_worker, name="lanchat-mdns", daemon=True)
        self._worker = worker
        worker.start()
        try:
            browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_state_change])
            with self._lock:
                self._browser = browser
                closed = self._closed
            if closed:  # stop() ran meanwhile and did not see this browser
                browser.cancel()
                return
            if not self._announce:  # a one-shot run only looks: nobody lists it
                return
            info = self._make_info(self._nick)
            zc.register_service(
                info, allow_name_change=True, cooperating_responders=COOPERATING_RESPONDERS
            )
        except Exception as exc:  # NonUniqueName, EventLoopBlocked, NotRunning after stop()
            if not self._closed:
                self._error = f"mDNS registration failed: {exc!r}"
                log.warning("mdns: %s", self._error)
            return
        self._claim(info)
        log.info("mdns: registered %s on %s", info.name, self._interfaces)

    def set_nick(self, nick: str) -> None:
        """Announce `nick`: register `<nick>@<host>` (~1.5 s), then say goodbye for the old name.

        Peers see the new name before the old one goes, so they never report us gone.
        """
        if nick == self._nick:
            return
        same_label = instance_label(nick, self._host) == instance_label(self._nick, self._host)
        self._nick = nick
        zc, old = self._zc, self._info
        if zc is None or old is None or self._closed:
            return
        info = self._make_info(nick)
        try:
            if same_label:  # only the TXT changes: keep the (possibly suffixed) name
                info.name = old.name
                zc.update_service(info)
            else:
                zc.register_service(
                    info, allow_name_change=True, cooperating_responders=COOPERATING_RESPONDERS
                )
            self._claim(info)
            if not same_label:
                zc.unregister_service(old)
        except Exception as exc:
            if not self._closed:
                log.warning("mdns: re-announce as %r failed: %r", nick, exc)
            return
        log.info("mdns: now announced as %s (nick %r)", info.name, nick)

    def stop(self) -> None:
        """Send goodbyes and close zeroconf; idempotent, ~0.3 s."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            zc, browser = self._zc, self._browser
            self._enabled = False
        if browser is not None:
            browser.cancel()  # joins the browser thread; our own goodbyes are not reported
        self._queue.put(None)
        if zc is not None:
            zc.close()  # unregister_all_services: 3 goodbyes 125 ms apart, then the loop stops
        if self._worker is not None:
            self._worker.join(WORKER_JOIN_TIMEOUT_S)
            if self._worker.is_alive():
                log.warning("mdns: resolver thread still busy after stop")

    @property
    def zeroconf(self) -> Zeroconf | None:
        """The running zeroconf instance, for other services of this node to share (one
        responder per process: a second instance misses unicast answers meant for it)."""
        with self._lock:
            return self._zc if self._enabled else None

    def stats(self) -> dict[str, Any]:
        """State for `lanchat doctor`."""
        with self._lock:
            return {
                "enabled": self._enabled,
                "error": self._error,
                "interfaces": list(self._interfaces),
                "registered": self._info.name if self._info is not None else None,
                "cooperating_responders": COOPERATING_RESPONDERS,
                "services_seen": len(self._seen),
                "services": {name: s.node_id for name, s in self._seen.items()},
                "sightings": self._sightings,
                "goodbyes": self._goodbyes,
                "dropped": dict(self._dropped),
            }

    # -- announce --------------------------------------------------------------------

    def _make_info(self, nick: str) -> ServiceInfo:
        """The ServiceInfo we register for `nick` on our interfaces."""
        name = f"{instance_label(nick, self._host)}.{SERVICE_TYPE}"
        return ServiceInfo(
            SERVICE_TYPE,
            name,
            port=self._port,
            properties={
                "v": str(PROTOCOL_VERSION),
                "id": self._node_id,
                "nick": _fit_txt("nick", nick),
                "host": _fit_txt("host", self._host),
            },
            # A server name per node, not the machine's: two nodes on one host (or Avahi)
            # never fight over one host name's address records.
            server=f"lanchat-{self._node_id[:16]}.local.",
            parsed_addresses=list(self._interfaces),
        )

    def _claim(self, info: ServiceInfo) -> None:
        """Record our registration and have the resolver look for a rival claim to its name."""
        with self._lock:
            self._info = info
        # a rival's records may have arrived while register_service blocked (see _check_conflict)
        self._queue.put((_Change.SEEN, info.name))

    def _fail(self, message: str) -> None:
        log.warning("mdns: %s", message)
        with self._lock:
            self._error = message
            self._enabled = False

    # -- browse ----------------------------------------------------------------------

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """ServiceBrowser handler (browser thread): queue only, never block."""
        del zeroconf, service_type  # part of the handler signature zeroconf calls with
        change = _Change.GONE if state_change is ServiceStateChange.Removed else _Change.SEEN
        self._queue.put((change, name))

    def _run_worker(self) -> None:
        """Resolver thread: handle browser changes in order until stop()."""
        while (item := self._queue.get()) is not None:
            if self._closed:
                return
            change, name = item
            try:
                if change is _Change.GONE:
                    self._handle_gone(name)
                else:
                    self._handle_seen(name)
            except (Exception, CancelledError):
                if not self._closed:
                    log.exception("mdns: handling %s %s failed", change.value, name)

    def _handle_seen(self, name: str) -> None:
        zc = self._zc
        if zc is None:
            return
        info = ServiceInfo(SERVICE_TYPE, name)
        resolved = info if info.request(zc, RESOLVE_TIMEOUT_MS) else None
        if resolved is not None:
            claimants = self._txt_ids(zc, name, resolved)
            if len(claimants) > 1:
                self._recheck_later(zc, name)
            self._check_conflict(zc, name, claimants)
        try:
            sighting = self._sighting_from(name, resolved)
        except Dropped as dropped:
            self._drop(name, dropped.reason)
            return
        log.debug("mdns[%s]: %s is %s %r", self._node_id[:6], name, sighting.node_id, sighting.nick)
        with self._lock:
            if self._seen.get(name) == sighting:
                return  # an unchanged re-announcement
            self._seen[name] = sighting
            self._sightings += 1
        self._call(self._on_seen, sighting)

    def _recheck_later(self, zc: Zeroconf, name: str) -> None:
        """Re-resolve a name two nodes claim until the loser has moved and the winner defended.

        zeroconf's browser reports nothing when the winner's records return to a cache that
        still holds an expiring copy of them, so only a later resolve shows who kept it.
        """
        with self._lock:
            if name in self._rechecking:
                return
            self._rechecking.add(name)
        loop = zc.loop
        assert loop is not None

        def schedule() -> None:  # on the loop thread
            for delay in RECHECK_AFTER_S:
                loop.call_later(delay, self._queue.put, (_Change.SEEN, name))
            loop.call_later(RECHECK_AFTER_S[-1], self._rechecking.discard, name)

        loop.call_soon_threadsafe(schedule)

    def _check_conflict(self, zc: Zeroconf, name: str, claimants: set[str | None]) -> None:
        """Another responder announces our name: the lower node id keeps it, the other renames.

        Probing alone misses this on one host: the defender answers a probe by unicast to
        127.0.0.1:5353 (or host:5353), which the kernel hands to just one of the sockets
        bound there, often not the prober's. Announcements are multicast and reach everyone.
        """
        mine = self._info
        if mine is None or name.lower() != mine.name.lower():
            return
        # the cache may hold both claimants' TXT records until the cache-flush second passes
        others = {i for i in claimants if i != self._node_id}
        if not others:
            return
        if all(i is not None and is_node_id(i) and self._node_id < i for i in others):
            now = time.monotonic()
            if now - self._last_defence >= DEFEND_INTERVAL_S:
                self._last_defence = now
                log.info("mdns: %s also claimed by %s; re-announcing ours", name, others)
                assert zc.loop is not None
                asyncio.run_coroutine_threadsafe(_defend(zc, mine), zc.loop)
            return
        log.info("mdns: %s also claimed by %s; taking a new name", name, others)
        # withdraw without a goodbye: a goodbye would erase the winner's PTR at every peer
        assert zc.loop is not None
        zc.loop.call_soon_threadsafe(zc.registry.async_remove, mine)
        info = self._make_info(self._nick)
        zc.register_service(
            info, allow_name_change=True, cooperating_responders=COOPERATING_RESPONDERS
        )
        self._claim(info)
        log.info("mdns: now announced as %s", info.name)

    def _txt_ids(self, zc: Zeroconf, name: str, info: ServiceInfo) -> set[str | None]:
        """The `id` of every TXT record cached for name (None where unreadable)."""

        async def cached() -> list[bytes]:
            now = current_time_millis()
            return [
                getattr(record, "text", b"")
                for record in zc.cache.async_all_by_details(name, _TYPE_TXT, _CLASS_IN)
                if not record.is_expired(now)
            ]

        if zc.loop is None or zc.done or self._closed:
            return set()
        texts = asyncio.run_coroutine_threadsafe(cached(), zc.loop).result(LOOP_CALL_TIMEOUT_S)
        ids: set[str | None] = set()
        for text in texts or [info.text or b""]:
            try:
                ids.add(_decode_txt(ServiceInfo(SERVICE_TYPE, name, properties=text)).get("id"))
            except Dropped:
                ids.add(None)
        return ids

    def _handle_gone(self, name: str) -> None:
        with self._lock:
            gone = self._seen.pop(name, None)
            if gone is None:
                return
            # a renamed node announces its new name before withdrawing the old one
            still_here = any(s.node_id == gone.node_id for s in self._seen.values())
            if not still_here:
                self._goodbyes += 1
        if not still_here:
            self._call(self._on_gone, gone.node_id)

    def _call(self, callback: Callable[[Any], object], arg: Any) -> None:
        if self._closed:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("mdns: callback %r raised", callback)

    def _drop(self, name: str, reason: DropReason) -> None:
        with self._lock:
            self._dropped[reason.value] += 1
            first = self._dropped[reason.value] == 1
        if reason is not DropReason.OWN:
            (log.info if first else log.debug)("mdns: dropped %r: %s", name, reason.value)

    # -- validation ------------------------------------------------------------------

    def _sighting_from(self, name: str, info: ServiceInfo | None) -> Sighting:
        """Validate a resolved service; raise Dropped with the reason if it is unusable."""
        if info is None:
            raise Dropped(DropReason.UNRESOLVED)
        txt = _decode_txt(info)
        node_id = txt.get("id")
        if node_id is None:
            raise Dropped(DropReason.MISSING_ID)
        if not is_node_id(node_id):
            raise Dropped(DropReason.BAD_ID)
        if node_id == self._node_id:
            raise Dropped(DropReason.OWN)
        version = txt.get("v")
        if version is not None and not (
            version.isascii() and version.isdigit() and len(version) <= 6
        ):
            raise Dropped(DropReason.BAD_VERSION)
        nick = txt.get("nick")
        if nick is None:
            raise Dropped(DropReason.MISSING_NICK)
        nick = clean_received_nick(nick, node_id, source="mdns")
        host = txt.get("host")
        if host is None:  # not every announcer sends it: take it from `<nick>@<host>`
            host = name[: -len(SERVICE_TYPE) - 1].rpartition("@")[2]
        if len(host) > HOST_MAX_CHARS or not _is_clean_text(host):
            raise Dropped(DropReason.BAD_HOST)
        port = info.port
        if port is None or not 0 < port <= 0xFFFF:
            raise Dropped(DropReason.BAD_PORT)
        address, interface = self._pick_address(info)
        return Sighting(
            node_id=node_id,
            nick=nick,
            host=host,
            address=address,
            port=port,
            instance=name,
            via="mdns",
            interface=interface,
        )

    def _pick_address(self, info: ServiceInfo) -> tuple[str, str]:
        """First IPv4 address in one of our subnets, else the first usable one."""
        ours_loopback = any(net.ip.is_loopback for net in self._networks)
        usable: list[ipaddress.IPv4Address] = []
        for text in info.parsed_addresses(IPVersion.V4Only):
            try:
                ip = ipaddress.IPv4Address(text)
            except ValueError:
                continue
            if ip.is_multicast or ip.is_unspecified or (ip.is_loopback and not ours_loopback):
                continue
            usable.append(ip)
        for ip in usable:
            for net in self._networks:
                if ip in net.network:
                    return str(ip), str(net.ip)
        if not usable:
            raise Dropped(DropReason.NO_ADDRESS)
        return str(usable[0]), ""


def _fit_txt(key: str, value: str) -> str:
    """Cut value so `key=value` fits one TXT string (255 bytes), on a character boundary."""
    room = TXT_STRING_MAX_BYTES - len(key.encode()) - 1
    return value.encode()[:room].decode("utf-8", "ignore")


async def _defend(zc: Zeroconf, info: ServiceInfo) -> None:
    """Re-announce info once the rival's burst is over (loop thread).

    The rival announces three times over ~0.45 s and RFC 6762 s10.2 cache-flush evicts only
    records older than one second, so waiting DEFEND_DELAY_S lets our first packet evict all
    of the rival's records at every peer (a later packet would change nothing they report).
    """
    await asyncio.sleep(DEFEND_DELAY_S)
    if not zc.done and zc.registry.async_get_info_name(info.name) is info:
        await zc.async_update_service(info)


def _decode_txt(info: ServiceInfo) -> dict[str, str]:
    """TXT keys and values as strict UTF-8 text; raise Dropped if too big or not UTF-8."""
    if len(info.text or b"") > TXT_MAX_BYTES:
        raise Dropped(DropReason.TXT_TOO_BIG)
    out: dict[str, str] = {}
    try:
        for key, value in info.properties.items():
            out[key.decode("utf-8")] = "" if value is None else value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Dropped(DropReason.TXT_NOT_UTF8) from exc
    return out
