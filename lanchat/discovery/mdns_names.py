"""Our mDNS name: registration, re-registration on a nick change, and name conflicts.

Registration probes first (RFC 6762 s8.1) and takes a "-2" suffix when the name is visibly
taken. On one host that probe is unreliable (the defender's unicast answer reaches only one
of the sockets bound to port 5353), so a node that later sees its name announced by another
node id keeps it if its id is lower (re-announcing after the rival's burst) and otherwise
moves to a suffixed name without a goodbye. `Registration`'s methods block on zeroconf;
call them from a worker thread, never from zeroconf's loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

from zeroconf import ServiceInfo, Zeroconf, current_time_millis

from lanchat.discovery.mdns_records import SERVICE_TYPE, decode_txt, fit_txt, instance_label
from lanchat.discovery.sighting import Dropped
from lanchat.identity import is_node_id
from lanchat.protocol import PROTOCOL_VERSION

log = logging.getLogger(__name__)

# False: probe first (RFC 6762 s8.1), so same-name conflicts get a "-2" suffix; peers see us
# ~1.2 s after start. True would skip probing and let two "alice@host" collide silently.
COOPERATING_RESPONDERS = False
DEFEND_INTERVAL_S = 1.0  # re-announce a contested name at most this often
DEFEND_DELAY_S = 2.0  # wait before re-announcing it (see _defend)
LOOP_CALL_TIMEOUT_S = 0.5  # a quick look at zeroconf's cache on its loop

_TYPE_TXT = 16  # DNS record type and class numbers (RFC 1035)
_CLASS_IN = 1


class Registration:
    """The service this node registers, and who keeps its name when another claims it.

    `on_claim(name)` is called after each registration, so the caller looks for a rival
    claim to the name (its records may have arrived while register_service blocked).
    """

    def __init__(self, *, node_id: str, host: str, port: int, interfaces: Sequence[str],
                 on_claim: Callable[[str], None]) -> None:
        self._node_id = node_id
        self._host = host
        self._port = port
        self._interfaces = list(interfaces)
        self._on_claim = on_claim
        self._lock = threading.Lock()
        self._info: ServiceInfo | None = None
        self._last_defence = -DEFEND_INTERVAL_S

    @property
    def info(self) -> ServiceInfo | None:
        """What we registered last (None before the first registration)."""
        with self._lock:
            return self._info

    def register(self, zc: Zeroconf, nick: str) -> ServiceInfo:
        """Probe for and register `<nick>@<host>` (a suffixed name if it is taken)."""
        info = self._make_info(nick)
        zc.register_service(
            info, allow_name_change=True, cooperating_responders=COOPERATING_RESPONDERS
        )
        self._claim(info)
        return info

    def change_nick(self, zc: Zeroconf, old_nick: str, nick: str) -> ServiceInfo:
        """Announce `nick`: a new name is registered before the old one says goodbye, so
        peers never report us gone; if only the TXT changes, the name is kept."""
        old = self.info
        if old is None:
            raise RuntimeError("not registered")
        same_label = instance_label(nick, self._host) == instance_label(old_nick, self._host)
        if not same_label:
            info = self.register(zc, nick)
            zc.unregister_service(old)
            return info
        info = self._make_info(nick)
        info.name = old.name  # keep the (possibly suffixed) name
        zc.update_service(info)
        self._claim(info)
        return info

    def check_conflict(self, zc: Zeroconf, name: str, claimants: set[str | None],
                       nick: str) -> None:
        """Another responder announces our name: the lower node id keeps it, the other renames.

        Probing alone misses this on one host: the defender answers a probe by unicast to
        127.0.0.1:5353 (or host:5353), which the kernel hands to just one of the sockets
        bound there, often not the prober's. Announcements are multicast and reach everyone.
        """
        mine = self.info
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
        info = self.register(zc, nick)
        log.info("mdns: now announced as %s", info.name)

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
                "nick": fit_txt("nick", nick),
                "host": fit_txt("host", self._host),
            },
            # A server name per node, not the machine's: two nodes on one host (or Avahi)
            # never fight over one host name's address records.
            server=f"lanchat-{self._node_id[:16]}.local.",
            parsed_addresses=list(self._interfaces),
        )

    def _claim(self, info: ServiceInfo) -> None:
        with self._lock:
            self._info = info
        self._on_claim(info.name)


def txt_ids(zc: Zeroconf, name: str, info: ServiceInfo) -> set[str | None]:
    """The `id` of every TXT record cached for name (None where unreadable)."""

    async def cached() -> list[bytes]:
        now = current_time_millis()
        return [
            getattr(record, "text", b"")
            for record in zc.cache.async_all_by_details(name, _TYPE_TXT, _CLASS_IN)
            if not record.is_expired(now)
        ]

    if zc.loop is None or zc.done:
        return set()
    texts = asyncio.run_coroutine_threadsafe(cached(), zc.loop).result(LOOP_CALL_TIMEOUT_S)
    ids: set[str | None] = set()
    for text in texts or [info.text or b""]:
        try:
            ids.add(decode_txt(ServiceInfo(SERVICE_TYPE, name, properties=text)).get("id"))
        except Dropped:
            ids.add(None)
    return ids


async def _defend(zc: Zeroconf, info: ServiceInfo) -> None:
    """Re-announce info once the rival's burst is over (loop thread).

    The rival announces three times over ~0.45 s and RFC 6762 s10.2 cache-flush evicts only
    records older than one second, so waiting DEFEND_DELAY_S lets our first packet evict all
    of the rival's records at every peer (a later packet would change nothing they report).
    """
    await asyncio.sleep(DEFEND_DELAY_S)
    if not zc.done and zc.registry.async_get_info_name(info.name) is info:
        await zc.async_update_service(info)
