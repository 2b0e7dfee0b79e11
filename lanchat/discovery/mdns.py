"""mDNS/DNS-SD announce and browse of `_lanchat._tcp.local.` with python-zeroconf.

Threads: zeroconf runs its own asyncio loop thread and a ServiceBrowser thread. The
browser thread only queues (change, name) pairs; one resolver thread here drains that
queue in order, resolves each name with a short timeout, validates the records and
calls `on_seen` / `on_gone`. Callbacks therefore run on that resolver thread, never on
the caller's thread: the node must marshal them to its own loop.

This module is the service's life cycle and its browsing. The checks on the records it
resolves (untrusted input) live in `mdns_records`; our own registration, and who keeps a
name two nodes claim, in `mdns_names`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from enum import Enum
from typing import Any

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from lanchat.discovery.mdns_names import COOPERATING_RESPONDERS, Registration, txt_ids
from lanchat.discovery.mdns_records import SERVICE_TYPE, local_networks, sighting_from
from lanchat.discovery.sighting import Dropped, DropReason, Sighting
from lanchat.identity import is_node_id

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 1500  # how long one resolve may wait for SRV/TXT/A answers
WORKER_JOIN_TIMEOUT_S = 0.5  # stop() waits at most this long for the resolver thread
RECHECK_AFTER_S = (1.5, 3.5, 5.5)  # re-resolve a contested name this long after seeing it

class _Change(Enum):
    SEEN = "seen"
    GONE = "gone"


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
        self._registration = Registration(
            node_id=node_id, host=host, port=port, interfaces=self._interfaces,
            on_claim=lambda name: self._queue.put((_Change.SEEN, name)))
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
        self._networks = local_networks(self._interfaces)
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
            info = self._registration.register(zc, self._nick)
        except Exception as exc:  # NonUniqueName, EventLoopBlocked, NotRunning after stop()
            if not self._closed:
                self._error = f"mDNS registration failed: {exc!r}"
                log.warning("mdns: %s", self._error)
            return
        log.info("mdns: registered %s on %s", info.name, self._interfaces)

    def set_nick(self, nick: str) -> None:
        """Announce `nick`: register `<nick>@<host>` (~1.5 s), then say goodbye for the old name.

        Peers see the new name before the old one goes, so they never report us gone.
        """
        if nick == self._nick:
            return
        old_nick, self._nick = self._nick, nick
        zc = self._zc
        if zc is None or self._registration.info is None or self._closed:
            return
        try:
            info = self._registration.change_nick(zc, old_nick, nick)
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
        registered = self._registration.info
        with self._lock:
            return {
                "enabled": self._enabled,
                "error": self._error,
                "interfaces": list(self._interfaces),
                "registered": registered.name if registered is not None else None,
                "cooperating_responders": COOPERATING_RESPONDERS,
                "services_seen": len(self._seen),
                "services": {name: s.node_id for name, s in self._seen.items()},
                "sightings": self._sightings,
                "goodbyes": self._goodbyes,
                "dropped": dict(self._dropped),
            }

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
            claimants = set() if self._closed else txt_ids(zc, name, resolved)
            if len(claimants) > 1:
                self._recheck_later(zc, name)
            self._registration.check_conflict(zc, name, claimants, self._nick)
        try:
            sighting = sighting_from(name, resolved, own_id=self._node_id,
                                     networks=self._networks)
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
