"""XEP-0174 presence: announce and browse `_presence._tcp.local.` with python-zeroconf.

Threads as in lanchat/discovery/mdns.py: the browser thread only queues names; one
resolver thread resolves them and calls `on_seen(buddy)` / `on_gone(instance)`, which the
caller marshals to its own loop. `start()` and `stop()` block briefly: run them in a worker.

The announcement runs on zeroconf's own loop as a future that `stop()` cancels: a node that
quits while it is still probing (the first ~1.5 s) neither waits for the probe nor leaves a
thread blocked on a zeroconf that its owner has meanwhile closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_presence._tcp.local."
DEFAULT_PORT = 5298
RESOLVE_TIMEOUT_MS = 3000
INSTANCE_MAX_BYTES = 63  # one DNS label
TXT_VALUE_MAX_CHARS = 200
STATUSES = ("avail", "away", "dnd")
# Our entity-capabilities node (XEP-0115 `node`, which names the software): another lanchat
# announcing it is reached by lanchat's own protocol, so it is not listed as a Bonjour peer.
LANCHAT_NODE = "lanchat"
REGISTER_TIMEOUT_S = 10.0  # probing and announcing take ~1.6 s on a quiet LAN
GOODBYE_TIMEOUT_S = 1.5  # three goodbyes 125 ms apart, on a zeroconf that may be closing


@dataclass(frozen=True)
class Buddy:
    """One XEP-0174 peer as announced: instance `user@machine`, address, port, TXT."""

    instance: str
    address: str
    port: int
    first: str = ""
    last: str = ""
    nick: str = ""
    status: str = "avail"
    msg: str = ""

    @property
    def name(self) -> str:
        """What to call the peer (one word where it can be, so `/msg NAME` works): its
        nick, its first name, or the user part of its instance."""
        return self.nick or self.first or self.instance.split("@", 1)[0] or self.instance


def instance_name(nick: str, host: str) -> str:
    """`nick@host`, cut to fit one DNS label."""
    name = f"{nick}@{host}"
    while len(name.encode()) > INSTANCE_MAX_BYTES:
        name = name[:-1]
    return name


class Presence:
    """Announce ourselves as an XEP-0174 peer and report the others."""

    def __init__(self, *, instance: str, first: str, server: str, port: int,
                 interfaces: Sequence[ipaddress.IPv4Interface], on_seen: Callable[[Buddy], object],
                 on_gone: Callable[[str], object], announce: bool = True) -> None:
        self.instance = instance
        self._first = first
        self._server = server
        self._port = port
        self._interfaces = [str(i.ip) for i in interfaces]
        self._networks = [i.network for i in interfaces]
        self._on_seen = on_seen
        self._on_gone = on_gone
        self._announce = announce  # False for a one-shot run: it looks, nobody lists it
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._info: ServiceInfo | None = None
        self._queue: queue.SimpleQueue[tuple[bool, str] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._seen: dict[str, Buddy] = {}
        self.dropped: Counter[str] = Counter()
        self.error = ""
        self.announced = False
        self._own = False  # we opened the zeroconf instance (else the node's mDNS did)
        self._lock = threading.Lock()
        self._stopped = False
        self._registering: concurrent.futures.Future[None] | None = None

    def start(self, shared: Zeroconf | None = None) -> None:
        """Browse and register on `shared` (the node's zeroconf) or on our own instance;
        faults are kept in `error`."""
        if self._stopped:
            return
        if shared is not None:
            zc = shared
        else:
            try:
                zc = Zeroconf(interfaces=list(self._interfaces), ip_version=IPVersion.V4Only)
            except Exception as exc:  # noqa: BLE001 - OSError, RuntimeError (bad interface)
                self.error = f"cannot open mDNS sockets on {self._interfaces}: {exc}"
                log.warning("xmpp presence: %s", self.error)
                return
            self._own = True
        self._zc = zc
        self._worker = threading.Thread(target=self._run_worker, name="lanchat-xmpp-mdns",
                                        daemon=True)
        self._worker.start()
        self._browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_change])
        self._info = self._make_info(self._first)
        if not self._announce:
            return
        try:
            with self._lock:
                if self._stopped:
                    return
                self._registering = asyncio.run_coroutine_threadsafe(
                    _register(zc, self._info), _loop_of(zc))
            self._registering.result(REGISTER_TIMEOUT_S)
            self.announced = True
            self.instance = self._info.name[:-len(SERVICE_TYPE) - 1]
        except concurrent.futures.CancelledError:
            log.info("xmpp presence: stopped before %r was announced", self.instance)
        except Exception as exc:  # noqa: BLE001 - NonUniqueName, timeout, loop not running
            self.error = f"cannot announce {self.instance!r}: {exc!r}"
            log.warning("xmpp presence: %s", self.error)

    def cancel(self) -> None:
        """End an announcement still in progress (any thread, never blocks): `start()`
        returns at once and `stop()` has nothing to say goodbye for."""
        with self._lock:
            self._stopped = True
            registering = self._registering
        if registering is not None:
            registering.cancel()

    def set_first(self, first: str) -> None:
        """Our nick changed: update the TXT record."""
        self._first = first
        if self._zc is not None and self._info is not None and self.announced:
            info = self._make_info(first)
            info.name = self._info.name
            try:
                self._zc.update_service(info)
                self._info = info
            except Exception as exc:  # noqa: BLE001
                log.info("xmpp presence: update failed: %s", exc)

    def stop(self) -> None:
        """Say goodbye (TTL 0 records) and close."""
        self.cancel()
        self._queue.put(None)
        zc = self._zc
        if zc is None:
            return
        if self._browser is not None:
            self._browser.cancel()
        try:
            if self.announced and self._info is not None and not zc.done:
                asyncio.run_coroutine_threadsafe(
                    _unregister(zc, self._info), _loop_of(zc)).result(GOODBYE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - closing anyway (a shared one may be closed)
            log.info("xmpp presence: goodbye failed: %r", exc)
        if self._own:
            zc.close()
        if self._worker is not None:
            self._worker.join(1.0)

    def stats(self) -> dict[str, Any]:
        """What doctor shows."""
        return {"instance": self.instance, "announced": self.announced, "error": self.error,
                "interfaces": list(self._interfaces), "port": self._port,
                "buddies": len(self._seen), "dropped": dict(self.dropped)}

    def _make_info(self, first: str) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE, f"{self.instance}.{SERVICE_TYPE}", port=self._port,
            properties={"txtvers": "1", "1st": first[:TXT_VALUE_MAX_CHARS],
                        "port.p2pj": str(self._port), "status": "avail", "msg": "",
                        "node": LANCHAT_NODE},
            server=self._server, parsed_addresses=list(self._interfaces))

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        self._queue.put((state_change is not ServiceStateChange.Removed, name))

    def _run_worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            present, name = item
            try:
                if present:
                    self._resolve(name)
                else:
                    self._gone(name)
            except Exception:  # noqa: BLE001 - one bad record never stops the worker
                log.exception("xmpp presence: %s", name)

    def _gone(self, name: str) -> None:
        instance = name[:-len(SERVICE_TYPE) - 1]
        if self._seen.pop(instance, None) is not None:
            self._on_gone(instance)

    def _resolve(self, name: str) -> None:
        if self._zc is None or not name.endswith("." + SERVICE_TYPE):
            return
        instance = name[:-len(SERVICE_TYPE) - 1]
        if instance == self.instance:
            return
        info = self._zc.get_service_info(SERVICE_TYPE, name, timeout=RESOLVE_TIMEOUT_MS)
        if info is None or not info.port:
            self.dropped["unresolved"] += 1
            return
        address = self._pick_address(info.parsed_addresses(IPVersion.V4Only))
        if address is None:
            self.dropped["no_local_address"] += 1
            return
        txt = _decode_txt(info.properties)
        if txt.get("node") == LANCHAT_NODE:
            self.dropped["lanchat"] += 1
            return
        port = info.port
        status = txt.get("status", "avail")
        buddy = Buddy(instance=instance, address=address, port=port,
                      first=txt.get("1st", ""), last=txt.get("last", ""),
                      nick=txt.get("nick", ""),
                      status=status if status in STATUSES else "avail", msg=txt.get("msg", ""))
        if self._seen.get(instance) != buddy:
            self._seen[instance] = buddy
            self._on_seen(buddy)

    def _pick_address(self, addresses: list[str]) -> str | None:
        """An address on one of our interfaces' networks (others cannot be reached)."""
        for address in addresses:
            if any(ipaddress.IPv4Address(address) in net for net in self._networks):
                return address
        return None


def _decode_txt(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in properties.items():
        try:
            k = key.decode("utf-8")
            v = (value or b"").decode("utf-8")
        except UnicodeDecodeError:
            continue
        out[k] = v[:TXT_VALUE_MAX_CHARS]
    return out


def _loop_of(zc: Zeroconf) -> asyncio.AbstractEventLoop:
    if zc.loop is None or zc.loop.is_closed():
        raise RuntimeError("zeroconf is not running")
    return zc.loop


async def _register(zc: Zeroconf, info: ServiceInfo) -> None:
    """Probe (renaming on a conflict), then wait for the announcements to go out."""
    announcing = await zc.async_register_service(info, allow_name_change=True)
    await announcing


async def _unregister(zc: Zeroconf, info: ServiceInfo) -> None:
    goodbyes = await zc.async_unregister_service(info)
    await goodbyes
